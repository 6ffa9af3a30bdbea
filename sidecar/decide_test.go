package sidecar

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math/rand"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
)

const (
	allowParam = "linstor.csi.linbit.com/allowRemoteVolumeAccess"
	zoneRule   = "- fromSame: [topology.kubernetes.io/zone]"
)

var fxConfig = Config{DriverName: fxDriver, GracePeriod: 5 * time.Minute, DefaultPolicy: PolicyAnywhere}

// fxNodes: n1 and n3 in zone a, n2 in zone b, n4 in zone c; all in region r1.
func fxNodes() map[string]Segment {
	return map[string]Segment{
		"n1": {fxZoneKey: "a", fxRegion: "r1"},
		"n2": {fxZoneKey: "b", fxRegion: "r1"},
		"n3": {fxZoneKey: "a", fxRegion: "r1"},
		"n4": {fxZoneKey: "c", fxRegion: "r1"},
	}
}

// fxStorageClasses by name: local only, zonal, anywhere.
var fxStorageClasses = map[string]*storagev1.StorageClass{
	"local":    mkSC("local", map[string]string{allowParam: "false"}),
	"zonal":    mkSC("zonal", map[string]string{allowParam: zoneRule}),
	"anywhere": mkSC("anywhere", map[string]string{allowParam: "true"}),
	"broken":   mkSC("broken", map[string]string{allowParam: "maybe"}),
	// default-sc sets no policy: LINSTOR CSI's default applies.
	"default-sc": mkSC("default-sc", nil),
}

// fxRD is pvc-1 with diskful replicas on n1 and n2 and a tie breaker on n3.
func fxRD() *RDView {
	return mkRD("pvc-1", 1, res("n1"), res("n2"), res("n3", "DISKLESS", "TIE_BREAKER"))
}

// fxInput is the input for pv against fxRD, the fixture nodes and the
// StorageClass the PV names (if it is a fixture one).
func fxInput(pv *corev1.PersistentVolume) Input {
	in := Input{PV: pv, RD: fxRD(), Nodes: fxNodes(), Now: fxNow}
	if pv.Spec.StorageClassName != "" {
		in.StorageClass = fxStorageClasses[pv.Spec.StorageClassName]
	}
	return in
}

func withSlot(in Input, s Slot) Input { in.Slot = s; return in }

type decideCase struct {
	name string
	in   Input
	cfg  *Config // nil: fxConfig
	kind Kind
	why  Reason
	warn bool
	// For KindReplace: the wanted affinity as a set of segments; nil: none.
	want []Segment
	ref  VolumeRef // checked when not zero
}

func runDecideCases(t *testing.T, cases []decideCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fxConfig
			if tc.cfg != nil {
				cfg = *tc.cfg
			}
			a := Decide(tc.in, cfg)
			if a.Kind != tc.kind || a.Reason != tc.why || a.Warn != tc.warn {
				t.Fatalf("Decide = %s/%s warn=%v (%s), want %s/%s warn=%v",
					a.Kind, a.Reason, a.Warn, a.Message, tc.kind, tc.why, tc.warn)
			}
			if a.Message == "" {
				t.Errorf("decision %s has no message", a.Reason)
			}
			if tc.in.PV != nil && (a.Name != tc.in.PV.Name || a.PV != tc.in.PV) {
				t.Errorf("action names PV %q (%p), want %q (%p)", a.Name, a.PV, tc.in.PV.Name, tc.in.PV)
			}
			if tc.ref != (VolumeRef{}) && a.Ref != tc.ref {
				t.Errorf("Ref = %v, want %v", a.Ref, tc.ref)
			}
			if a.Kind != KindReplace {
				if a.Affinity != nil && a.Kind == KindNone {
					t.Errorf("no-op decision carries affinity %s", DescribeAffinity(a.Affinity))
				}
				return
			}
			got, ok := affinitySegments(a.Affinity)
			if !ok || !sameSegmentSet(got, tc.want) || (a.Affinity == nil) != (tc.want == nil) {
				t.Errorf("replace with %s, want %v", DescribeAffinity(a.Affinity), segSet(tc.want))
			}
			if a.Topology == nil || !AffinityMatches(a.Affinity, *a.Topology) {
				t.Errorf("replacement affinity %s does not match the topology the action reports", DescribeAffinity(a.Affinity))
			}
		})
	}
}

func TestDecide(t *testing.T) {
	n1n2 := affinityOf(host("n1"), host("n2"))
	zero := time.Duration(0)
	noGrace := fxConfig
	noGrace.GracePeriod = zero
	withRD := func(in Input, edit func(rd *RDView)) Input { edit(in.RD); return in }
	withNodes := func(in Input, nodes map[string]Segment) Input { in.Nodes = nodes; return in }
	ref := VolumeRef{RD: "pvc-1"}

	runDecideCases(t, []decideCase{
		// In sync: nothing to do.
		{name: "local policy matching replicas is in sync",
			in:   fxInput(mkPV("pv", "pvc-1", withSC("local"), withAffinity(n1n2))),
			kind: KindNone, why: ReasonInSync, ref: ref},
		{name: "terms in another order and repeated are in sync",
			in: fxInput(mkPV("pv", "pvc-1", withSC("local"),
				withAffinity(affinityOf(host("n2"), host("n1"), host("n2"))))),
			kind: KindNone, why: ReasonInSync},
		{name: "zonal policy matching the replicas' zones is in sync",
			in:   fxInput(mkPV("pv", "pvc-1", withSC("zonal"), withAffinity(affinityOf(zone("b"), zone("a"))))),
			kind: KindNone, why: ReasonInSync},
		{name: "anywhere policy without affinity is in sync",
			in:   fxInput(mkPV("pv", "pvc-1", withSC("anywhere"))),
			kind: KindNone, why: ReasonInSync},
		{name: "default policy without affinity is in sync",
			in:   fxInput(mkPV("pv", "pvc-1", withSC("default-sc"))),
			kind: KindNone, why: ReasonInSync},

		// No StorageClass and no policy on the PV: a static PV, maybe pinned by
		// hand to its only replica. It once got the driver default and lost
		// its affinity although nothing had moved.
		{name: "no storage class and no policy on the PV is skipped with a warning",
			in:   fxInput(mkPV("pv", "pvc-1", withAffinity(affinityOf(host("n1"))))),
			kind: KindNone, why: ReasonNoStorageClass, warn: true},
		{name: "no storage class but an override annotation is repaired",
			in: fxInput(mkPV("pv", "pvc-1", withAnnotation("override.piraeus.io/p", "false"),
				withAffinity(affinityOf(host("n1"))))),
			cfg:  &noGrace,
			kind: KindReplace, why: ReasonDrifted, want: []Segment{host("n1"), host("n2")}},

		// The volume definition's saved-state slot is not free.
		{name: "drifted PV waits while another PV's saved state holds its slot",
			in:   withSlot(fxInput(mkPV("pv", "pvc-1", withSC("local"), withAffinity(affinityOf(host("n4"))))), Slot{Owner: "other-pv"}),
			cfg:  &noGrace,
			kind: KindNone, why: ReasonDuplicateHandle, warn: true, ref: ref},
		{name: "drifted PV is not repaired over an unreadable saved state",
			in: withSlot(fxInput(mkPV("pv", "pvc-1", withSC("local"), withAffinity(affinityOf(host("n4"))))),
				Slot{Unreadable: errors.New("saved PV is not valid JSON")}),
			cfg:  &noGrace,
			kind: KindNone, why: ReasonInvalidSavedState, warn: true, ref: ref},
		{name: "in-sync PV is in sync whatever its slot holds",
			in:   withSlot(fxInput(mkPV("pv", "pvc-1", withSC("local"), withAffinity(n1n2))), Slot{Owner: "other-pv"}),
			kind: KindNone, why: ReasonInSync},
		{name: "storage class missing but annotation gives the policy",
			in: fxInput(mkPV("pv", "pvc-1", withSC("gone"), withAnnotation("override.piraeus.io/x", "false"),
				withAffinity(n1n2))),
			kind: KindNone, why: ReasonInSync},

		// Drifted: replace with the affinity of the current replicas.
		{name: "replica moved from n2 to n4 under local policy",
			in: withRD(fxInput(mkPV("pv", "pvc-1", withSC("local"), withAffinity(n1n2))),
				func(rd *RDView) { rd.Resources = []Resource{{Name: "pvc-1", Node: "n1"}, {Name: "pvc-1", Node: "n4"}} }),
			kind: KindReplace, why: ReasonDrifted, want: []Segment{host("n1"), host("n4")}, ref: ref},
		{name: "stale extra node under local policy",
			in: fxInput(mkPV("pv", "pvc-1", withSC("local"),
				withAffinity(affinityOf(host("n1"), host("n2"), host("old"))))),
			kind: KindReplace, why: ReasonDrifted, want: []Segment{host("n1"), host("n2")}},
		{name: "local policy without affinity",
			in:   fxInput(mkPV("pv", "pvc-1", withSC("local"))),
			kind: KindReplace, why: ReasonDrifted, want: []Segment{host("n1"), host("n2")}},
		{name: "zonal policy with hostname affinity",
			in:   fxInput(mkPV("pv", "pvc-1", withSC("zonal"), withAffinity(n1n2))),
			kind: KindReplace, why: ReasonDrifted, want: []Segment{zone("a"), zone("b")}},
		{name: "anywhere policy with affinity drops the affinity",
			in:   fxInput(mkPV("pv", "pvc-1", withSC("anywhere"), withAffinity(n1n2))),
			kind: KindReplace, why: ReasonDrifted, want: nil},
		{name: "volume context policy is honoured",
			in: fxInput(mkPV("pv", "pvc-1", withSC("anywhere"), withAffinity(n1n2),
				withVolumeAttributes(map[string]string{VolumeContextMarker: "true", VolumeContextPolicyKey: zoneRule}))),
			kind: KindReplace, why: ReasonDrifted, want: []Segment{zone("a"), zone("b")}},
		{name: "affinity with a NotIn term is replaced",
			in: fxInput(mkPV("pv", "pvc-1", withSC("local"), withAffinity(affinity(corev1.NodeSelectorTerm{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: HostnameKey, Operator: corev1.NodeSelectorOpNotIn, Values: []string{"n3"}}},
			})))),
			kind: KindReplace, why: ReasonDrifted, want: []Segment{host("n1"), host("n2")}},

		// Skips.
		{name: "PV of another driver",
			in:   fxInput(mkPV("pv", "pvc-1", withDriver("other.csi.example.com"), withSC("local"))),
			kind: KindNone, why: ReasonForeignDriver},
		{name: "PV without CSI source",
			in:   fxInput(mkPV("pv", "pvc-1", withoutCSI(), withSC("local"))),
			kind: KindNone, why: ReasonNotCSI},
		{name: "skip annotation set",
			in:   fxInput(mkPV("pv", "pvc-1", withSC("local"), withAnnotation(SkipAnnotation, "yes"))),
			kind: KindNone, why: ReasonSkipAnnotation},
		{name: "empty skip annotation does not skip",
			in:   fxInput(mkPV("pv", "pvc-1", withSC("local"), withAnnotation(SkipAnnotation, ""))),
			kind: KindReplace, why: ReasonDrifted, want: []Segment{host("n1"), host("n2")}},
		{name: "skip property on the resource definition",
			in:   withRD(fxInput(mkPV("pv", "pvc-1", withSC("local"))), func(rd *RDView) { rd.Skip = "true" }),
			kind: KindNone, why: ReasonSkipProperty},
		{name: "empty skip property does not skip",
			in:   withRD(fxInput(mkPV("pv", "pvc-1", withSC("local"))), func(rd *RDView) { rd.Skip = "" }),
			kind: KindReplace, why: ReasonDrifted, want: []Segment{host("n1"), host("n2")}},
		{name: "released PV",
			in:   fxInput(mkPV("pv", "pvc-1", withSC("local"), withPhase(corev1.VolumeReleased))),
			kind: KindNone, why: ReasonReleased},
		{name: "terminating PV",
			in:   fxInput(mkPV("pv", "pvc-1", withSC("local"), withDeleting())),
			kind: KindNone, why: ReasonTerminating},
		{name: "PV younger than the grace period",
			in:   fxInput(mkPV("pv", "pvc-1", withSC("local"), withCreated(fxNow.Add(-time.Minute)))),
			kind: KindNone, why: ReasonGracePeriod},
		{name: "PV exactly as old as the grace period is decided",
			in:   fxInput(mkPV("pv", "pvc-1", withSC("local"), withCreated(fxNow.Add(-5*time.Minute)))),
			kind: KindReplace, why: ReasonDrifted, want: []Segment{host("n1"), host("n2")}},
		{name: "grace period 0 disables it",
			in:   fxInput(mkPV("pv", "pvc-1", withSC("local"), withCreated(fxNow))),
			cfg:  &noGrace,
			kind: KindReplace, why: ReasonDrifted, want: []Segment{host("n1"), host("n2")}},

		// LINSTOR does not say enough.
		{name: "malformed volume handle warns",
			in:   fxInput(mkPV("pv", "pvc-1/x", withSC("local"))),
			kind: KindNone, why: ReasonMalformedHandle, warn: true},
		{name: "no resource definition",
			in:   Input{PV: mkPV("pv", "pvc-1", withSC("local")), Nodes: fxNodes(), StorageClass: fxStorageClasses["local"], Now: fxNow},
			kind: KindNone, why: ReasonNoRD, ref: ref},
		{name: "no volume definition for rd/1",
			in:   fxInput(mkPV("pv", "pvc-1/1", withSC("local"))),
			kind: KindNone, why: ReasonNoVD, ref: VolumeRef{RD: "pvc-1", Volume: 1}},
		{name: "resource definition without resources",
			in:   withRD(fxInput(mkPV("pv", "pvc-1", withSC("local"))), func(rd *RDView) { rd.Resources = nil }),
			kind: KindNone, why: ReasonNoResources},
		{name: "no healthy diskful replica",
			in: withRD(fxInput(mkPV("pv", "pvc-1", withSC("local"), withAffinity(n1n2))), func(rd *RDView) {
				rd.Resources = []Resource{{Name: "pvc-1", Node: "n1", Flags: []string{"DELETE"}},
					{Name: "pvc-1", Node: "n2", Flags: []string{"FAILED_DEPLOYMENT"}},
					{Name: "pvc-1", Node: "n3", Flags: []string{"DISKLESS", "TIE_BREAKER"}}}
			}),
			kind: KindNone, why: ReasonNoDiskful},
		{name: "every diskful node unknown warns",
			in:   withNodes(fxInput(mkPV("pv", "pvc-1", withSC("local"))), map[string]Segment{"n3": {fxZoneKey: "a"}}),
			kind: KindNone, why: ReasonUnknownNodes, warn: true},
		// LINSTOR CSI fails rather than compute a topology without a replica
		// node's properties; here the unknown n2 lacks a zone, which would
		// widen the zonal PV to "anywhere".
		{name: "some diskful node unknown warns instead of widening the affinity",
			in: withNodes(fxInput(mkPV("pv", "pvc-1", withSC("zonal"), withAffinity(affinityOf(zone("a"), zone("b"))))),
				map[string]Segment{"n1": {fxZoneKey: "a"}}),
			kind: KindNone, why: ReasonUnknownNodes, warn: true},
		{name: "invalid annotation policy warns",
			in:   fxInput(mkPV("pv", "pvc-1", withSC("local"), withAnnotation("override.piraeus.io/x", "{}"))),
			kind: KindNone, why: ReasonInvalidPolicy, warn: true},
		{name: "invalid storage class policy warns",
			in:   fxInput(mkPV("pv", "pvc-1", withSC("broken"))),
			kind: KindNone, why: ReasonInvalidPolicy, warn: true},
		{name: "storage class missing warns",
			in:   fxInput(mkPV("pv", "pvc-1", withSC("gone"), withAffinity(n1n2))),
			kind: KindNone, why: ReasonMissingSC, warn: true},
	})
}

func TestDecideMultiVolumeResourceDefinition(t *testing.T) {
	rd := mkRD("rd", 2, res("n1"), res("n4"), res("n2", "DISKLESS"))
	stale := affinityOf(host("n1"), host("n2"))
	current := affinityOf(host("n4"), host("n1"))
	cases := []struct {
		name string
		pv   *corev1.PersistentVolume
		kind Kind
		ref  VolumeRef
	}{
		{"volume 0 drifted", mkPV("pv-a", "rd", withSC("local"), withAffinity(stale)), KindReplace, VolumeRef{RD: "rd"}},
		{"volume 1 drifted", mkPV("pv-b", "rd/1", withSC("local"), withAffinity(stale)), KindReplace, VolumeRef{RD: "rd", Volume: 1}},
		{"volume 0 current", mkPV("pv-c", "rd/0", withSC("local"), withAffinity(current)), KindNone, VolumeRef{RD: "rd"}},
		{"volume 1 current", mkPV("pv-d", "rd/1", withSC("local"), withAffinity(current)), KindNone, VolumeRef{RD: "rd", Volume: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{PV: tc.pv, RD: rd, Nodes: fxNodes(), StorageClass: fxStorageClasses["local"], Now: fxNow}
			a := Decide(in, fxConfig)
			if a.Kind != tc.kind || a.Ref != tc.ref || a.Name != tc.pv.Name {
				t.Fatalf("Decide = %s/%s ref %v name %s (%s), want %s ref %v name %s",
					a.Kind, a.Reason, a.Ref, a.Name, a.Message, tc.kind, tc.ref, tc.pv.Name)
			}
			if a.Kind == KindReplace {
				got, _ := affinitySegments(a.Affinity)
				if !sameSegmentSet(got, []Segment{host("n1"), host("n4")}) {
					t.Errorf("replace with %s, want the RD's replicas n1, n4", DescribeAffinity(a.Affinity))
				}
			}
		})
	}
}

// LINSTOR deletes a replica in phases: DRBD_DELETE while the satellite takes
// DRBD down, then DELETE as well while it removes the storage, then the
// resource is gone (creating it again in between undoes it). LINSTOR CSI
// counts a DRBD_DELETE replica as diskful; the sidecar does not, so a move
// (new replica n4, n2 leaving) is repaired once, straight to the replicas
// that stay, and never widened to the one that goes (docs/design.md,
// "Replicas being deleted").
func TestDecideReplicasInLINSTORsDeletionWindow(t *testing.T) {
	moved := func(leaving ...string) func(rd *RDView) {
		return func(rd *RDView) {
			rd.Resources = []Resource{res("n1"), res("n2", leaving...), res("n4"), res("n3", "DISKLESS", "TIE_BREAKER")}
			for i := range rd.Resources {
				rd.Resources[i].Name = "pvc-1"
			}
		}
	}
	withRD := func(in Input, edit func(rd *RDView)) Input { edit(in.RD); return in }
	local := func(aff ...Segment) Input {
		return fxInput(mkPV("pv", "pvc-1", withSC("local"), withAffinity(affinityOf(aff...))))
	}
	runDecideCases(t, []decideCase{
		{name: "a replica in its first phase (DRBD_DELETE) no longer counts",
			in:   withRD(local(host("n1"), host("n2")), moved("DRBD_DELETE")),
			kind: KindReplace, why: ReasonDrifted, want: []Segment{host("n1"), host("n4")}},
		{name: "nor in its second phase (DELETE and DRBD_DELETE)",
			in:   withRD(local(host("n1"), host("n2")), moved("DELETE", "DRBD_DELETE")),
			kind: KindReplace, why: ReasonDrifted, want: []Segment{host("n1"), host("n4")}},
		{name: "a PV already on the replicas that stay is in sync through the window",
			in:   withRD(local(host("n1"), host("n4")), moved("DRBD_DELETE")),
			kind: KindNone, why: ReasonInSync},
		{name: "an affinity that still names the leaving replica is narrowed",
			in:   withRD(local(host("n1"), host("n2"), host("n4")), moved("DRBD_DELETE")),
			kind: KindReplace, why: ReasonDrifted, want: []Segment{host("n1"), host("n4")}},
		{name: "the leaving replica's zone is dropped under a zonal policy",
			in: withRD(fxInput(mkPV("pv", "pvc-1", withSC("zonal"), withAffinity(affinityOf(zone("a"), zone("b"))))),
				moved("DRBD_DELETE")),
			kind: KindReplace, why: ReasonDrifted, want: []Segment{zone("a"), zone("c")}},
		{name: "a deletion undone (flag cleared) counts the replica again",
			in:   withRD(local(host("n1"), host("n4")), moved()),
			kind: KindReplace, why: ReasonDrifted, want: []Segment{host("n1"), host("n2"), host("n4")}},
		{name: "every diskful replica being deleted leaves the PV alone",
			in: withRD(local(host("n1"), host("n2")), func(rd *RDView) {
				rd.Resources = []Resource{{Name: "pvc-1", Node: "n1", Flags: []string{"DRBD_DELETE"}},
					{Name: "pvc-1", Node: "n2", Flags: []string{"DELETE", "DRBD_DELETE"}}}
			}),
			kind: KindNone, why: ReasonNoDiskful},
		{name: "an INACTIVE replica still counts, as in LINSTOR CSI",
			in:   withRD(local(host("n1"), host("n2"), host("n4")), moved("INACTIVE")),
			kind: KindNone, why: ReasonInSync},
	})
}

func TestDecideSavedState(t *testing.T) {
	live := mkPV("pv", "pvc-1", withSC("local"), withAffinity(affinityOf(host("old"))))
	replacement := Replacement(live, affinityOf(host("n1"), host("n2")))
	saved := &SavedState{Ref: VolumeRef{RD: "pvc-1"}, PV: replacement}
	foreign := &SavedState{Ref: VolumeRef{RD: "pvc-1"},
		PV: Replacement(mkPV("pv", "pvc-1", withDriver("other.csi.example.com")), nil)}
	invalid := &SavedState{Ref: VolumeRef{RD: "pvc-1", Volume: 2}, Err: errors.New("saved PV is not valid JSON")}

	cases := []struct {
		name     string
		pv       *corev1.PersistentVolume
		saved    *SavedState
		kind     Kind
		why      Reason
		warn     bool
		wantName string
	}{
		{"missing PV is recreated", nil, saved, KindRecreate, ReasonInterruptedReplace, false, "pv"},
		{"terminating PV is recreated", mkPV("pv", "pvc-1", withDeleting()), saved, KindRecreate, ReasonInterruptedReplace, false, "pv"},
		{"live PV clears the state", live, saved, KindClearSaved, ReasonStaleSavedState, false, "pv"},
		{"live PV with skip annotation still clears the state",
			mkPV("pv", "pvc-1", withAnnotation(SkipAnnotation, "true")), saved, KindClearSaved, ReasonStaleSavedState, false, "pv"},
		{"released live PV still clears the state",
			mkPV("pv", "pvc-1", withPhase(corev1.VolumeReleased)), saved, KindClearSaved, ReasonStaleSavedState, false, "pv"},
		{"invalid state without PV warns and is left alone", nil, invalid, KindNone, ReasonInvalidSavedState, true, ""},
		{"invalid state with live PV warns and is left alone", live, invalid, KindNone, ReasonInvalidSavedState, true, "pv"},
		{"state of another driver is left alone", nil, foreign, KindNone, ReasonForeignDriver, false, "pv"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{PV: tc.pv, Saved: tc.saved, RD: fxRD(), Nodes: fxNodes(), StorageClass: fxStorageClasses["local"], Now: fxNow}
			a := Decide(in, fxConfig)
			if a.Kind != tc.kind || a.Reason != tc.why || a.Warn != tc.warn {
				t.Fatalf("Decide = %s/%s warn=%v (%s), want %s/%s warn=%v",
					a.Kind, a.Reason, a.Warn, a.Message, tc.kind, tc.why, tc.warn)
			}
			if a.Name != tc.wantName {
				t.Errorf("Name = %q, want %q", a.Name, tc.wantName)
			}
			if a.Saved != tc.saved || a.Ref != tc.saved.Ref {
				t.Errorf("action carries saved state %p ref %v, want %p ref %v", a.Saved, a.Ref, tc.saved, tc.saved.Ref)
			}
			if a.PV != tc.pv {
				t.Errorf("action PV = %p, want the live PV %p", a.PV, tc.pv)
			}
			if a.Message == "" {
				t.Errorf("decision has no message")
			}
			if a.Kind == KindRecreate {
				got, _ := affinitySegments(a.Affinity)
				if !sameSegmentSet(got, []Segment{host("n1"), host("n2")}) {
					t.Errorf("recreate with %s, want the saved affinity", DescribeAffinity(a.Affinity))
				}
			}
		})
	}
}

// TestDecideNeverReplacesAMatchingPV generates random topologies and checks two
// properties: a PV whose affinity already matches its topology, however its
// terms are ordered or repeated, is never replaced; and a replace converges,
// its affinity deciding as in sync.
func TestDecideNeverReplacesAMatchingPV(t *testing.T) {
	rng := rand.New(rand.NewSource(20250301))
	policies := []Policy{
		PolicyAnywhere,
		PolicyLocalOnly,
		{{FromSame: []string{fxZoneKey}}},
		{{FromSame: []string{fxRegion}}, {FromSame: []string{fxZoneKey}}},
		{{FromSame: []string{fxRegion, fxZoneKey}}},
		{{FromSame: []string{fxZoneKey, HostnameKey}}, {FromSame: []string{fxRegion}}},
	}
	flagSets := [][]string{nil, nil, nil, {"DISKLESS"}, {"DISKLESS", "TIE_BREAKER"}, {"DELETE"}, {"FAILED_DEPLOYMENT"}}
	pick := func(xs ...string) string { return xs[rng.Intn(len(xs))] }

	for i := 0; i < 3000; i++ {
		nodes := map[string]Segment{}
		var resources []Resource
		for n := 0; n < 1+rng.Intn(6); n++ {
			name := fmt.Sprintf("n%d", n)
			s := Segment{}
			if rng.Intn(10) < 8 {
				s[fxZoneKey] = pick("a", "b", "c")
			}
			if rng.Intn(10) < 7 {
				s[fxRegion] = pick("r1", "r2")
			}
			if rng.Intn(10) < 5 {
				s[HostnameKey] = name
			}
			if rng.Intn(10) < 9 {
				nodes[name] = s
			}
			if rng.Intn(10) < 6 {
				resources = append(resources, Resource{Name: "rd", Node: name, Flags: flagSets[rng.Intn(len(flagSets))]})
			}
		}
		if len(resources) == 0 {
			resources = append(resources, Resource{Name: "rd", Node: "n0"})
		}
		policy := policies[rng.Intn(len(policies))]
		topo := AccessibleTopology(resources, nodes, policy)

		var aff *corev1.VolumeNodeAffinity
		if !topo.Anywhere && len(topo.Segments) > 0 {
			aff = shuffledAffinity(rng, topo.Segments)
		}
		pv := mkPV("pv", "rd", withAnnotation("override.piraeus.io/policy", policy.String()), withAffinity(aff))
		in := Input{PV: pv, RD: &RDView{Name: "rd", Volumes: map[int]string{0: ""}, Resources: resources}, Nodes: nodes, Now: fxNow}
		desc := fmt.Sprintf("case %d: policy %s, resources %v, nodes %v, affinity %s", i, policy, resources, nodes, DescribeAffinity(aff))

		a := Decide(in, fxConfig)
		if a.Kind == KindReplace {
			t.Fatalf("%s: matching PV replaced (%s)", desc, a.Message)
		}
		switch a.Reason {
		case ReasonInSync, ReasonNoDiskful, ReasonUnknownNodes:
		default:
			t.Fatalf("%s: unexpected decision %s/%s (%s)", desc, a.Kind, a.Reason, a.Message)
		}

		wrong := pv.DeepCopy()
		wrong.Spec.NodeAffinity = affinityOf(host("elsewhere"))
		in.PV = wrong
		a = Decide(in, fxConfig)
		if a.Kind != KindReplace {
			continue
		}
		fixed := Replacement(wrong, a.Affinity)
		in.PV = fixed
		if again := Decide(in, fxConfig); again.Reason != ReasonInSync {
			t.Fatalf("%s: after replacing with %s the decision is %s/%s (%s), want in-sync",
				desc, DescribeAffinity(a.Affinity), again.Kind, again.Reason, again.Message)
		}
	}
}

// shuffledAffinity renders segments as terms in random order, with random
// expression order inside each term and a random term repeated.
func shuffledAffinity(rng *rand.Rand, segs []Segment) *corev1.VolumeNodeAffinity {
	var terms []corev1.NodeSelectorTerm
	for _, s := range segs {
		pairs := segPairs(s)
		rng.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
		terms = append(terms, term(pairs...))
	}
	if rng.Intn(3) == 0 {
		terms = append(terms, terms[rng.Intn(len(terms))])
	}
	rng.Shuffle(len(terms), func(i, j int) { terms[i], terms[j] = terms[j], terms[i] })
	return affinity(terms...)
}

// TestDecideCasesCoverEveryReason reads decide.go for the Reason constants and
// fails when a test of this file never names one, so a new reason needs a case.
func TestDecideCasesCoverEveryReason(t *testing.T) {
	fset := token.NewFileSet()
	src, err := parser.ParseFile(fset, "decide.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	for _, d := range src.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if typ, ok := vs.Type.(*ast.Ident); ok && typ.Name == "Reason" {
				for _, n := range vs.Names {
					declared = append(declared, n.Name)
				}
			}
		}
	}
	if len(declared) == 0 {
		t.Fatal("found no Reason constants in decide.go")
	}

	tests, err := parser.ParseFile(fset, "decide_test.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, d := range tests.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == "TestDecideCasesCoverEveryReason" {
			continue
		}
		ast.Inspect(d, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok {
				used[id.Name] = true
			}
			return true
		})
	}
	for _, name := range declared {
		if !used[name] {
			t.Errorf("no Decide test case for %s", name)
		}
	}
}

package decide_test

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math/rand"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
)

const (
	allowParam = "linstor.csi.linbit.com/allowRemoteVolumeAccess"
	zoneRule   = "- fromSame: [topology.kubernetes.io/zone]"
)

var fxConfig = decide.Config{DriverName: fixture.Driver, GracePeriod: 5 * time.Minute, DefaultPolicy: decide.PolicyAnywhere}

// fxNodes: n1 and n3 in zone a, n2 in zone b, n4 in zone c; all in region r1.
func fxNodes() map[string]decide.Segment {
	return map[string]decide.Segment{
		"n1": {fixture.ZoneKey: "a", fixture.Region: "r1"},
		"n2": {fixture.ZoneKey: "b", fixture.Region: "r1"},
		"n3": {fixture.ZoneKey: "a", fixture.Region: "r1"},
		"n4": {fixture.ZoneKey: "c", fixture.Region: "r1"},
	}
}

// fxStorageClasses by name: local only, zonal, anywhere.
var fxStorageClasses = map[string]*storagev1.StorageClass{
	"local":    fixture.SC("local", map[string]string{allowParam: "false"}),
	"zonal":    fixture.SC("zonal", map[string]string{allowParam: zoneRule}),
	"anywhere": fixture.SC("anywhere", map[string]string{allowParam: "true"}),
	"broken":   fixture.SC("broken", map[string]string{allowParam: "maybe"}),
	// default-sc sets no policy: LINSTOR CSI's default applies.
	"default-sc": fixture.SC("default-sc", nil),
}

// fxRD is pvc-1 with diskful replicas on n1 and n2 and a tie breaker on n3.
func fxRD() *decide.RDView {
	return fixture.RD("pvc-1", 1, fixture.Res("n1"), fixture.Res("n2"), fixture.Res("n3", "DISKLESS", "TIE_BREAKER"))
}

// fxInput is the input for pv against fxRD, the fixture nodes and the
// StorageClass the PV names (if it is a fixture one).
func fxInput(pv *corev1.PersistentVolume) decide.Input {
	in := decide.Input{PV: pv, RD: fxRD(), Nodes: fxNodes(), Now: fixture.Now}
	if pv.Spec.StorageClassName != "" {
		in.StorageClass = fxStorageClasses[pv.Spec.StorageClassName]
	}
	return in
}

func withSlot(in decide.Input, s decide.Slot) decide.Input { in.Slot = s; return in }

type decideCase struct {
	name string
	in   decide.Input
	cfg  *decide.Config // nil: fxConfig
	kind decide.Kind
	why  decide.Reason
	warn bool
	// For KindReplace: the wanted affinity as a set of segments; nil: none.
	want []decide.Segment
	ref  decide.VolumeRef // checked when not zero
}

func runDecideCases(t *testing.T, cases []decideCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fxConfig
			if tc.cfg != nil {
				cfg = *tc.cfg
			}
			a := decide.Decide(tc.in, cfg)
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
			if tc.ref != (decide.VolumeRef{}) && a.Ref != tc.ref {
				t.Errorf("Ref = %v, want %v", a.Ref, tc.ref)
			}
			if a.Kind != decide.KindReplace {
				if a.Affinity != nil && a.Kind == decide.KindNone {
					t.Errorf("no-op decision carries affinity %s", decide.DescribeAffinity(a.Affinity))
				}
				return
			}
			got, ok := fixture.AffinitySegments(a.Affinity)
			if !ok || !fixture.SameSegmentSet(got, tc.want) || (a.Affinity == nil) != (tc.want == nil) {
				t.Errorf("replace with %s, want %v", decide.DescribeAffinity(a.Affinity), fixture.SegSet(tc.want))
			}
			if a.Topology == nil || !decide.AffinityMatches(a.Affinity, *a.Topology) {
				t.Errorf("replacement affinity %s does not match the topology the action reports", decide.DescribeAffinity(a.Affinity))
			}
		})
	}
}

func TestDecide(t *testing.T) {
	n1n2 := fixture.AffinityOf(fixture.Host("n1"), fixture.Host("n2"))
	zero := time.Duration(0)
	noGrace := fxConfig
	noGrace.GracePeriod = zero
	withRD := func(in decide.Input, edit func(rd *decide.RDView)) decide.Input { edit(in.RD); return in }
	withNodes := func(in decide.Input, nodes map[string]decide.Segment) decide.Input { in.Nodes = nodes; return in }
	ref := decide.VolumeRef{RD: "pvc-1"}

	runDecideCases(t, []decideCase{
		// In sync: nothing to do.
		{name: "local policy matching replicas is in sync",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"), fixture.WithAffinity(n1n2))),
			kind: decide.KindNone, why: decide.ReasonInSync, ref: ref},
		{name: "terms in another order and repeated are in sync",
			in: fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"),
				fixture.WithAffinity(fixture.AffinityOf(fixture.Host("n2"), fixture.Host("n1"), fixture.Host("n2"))))),
			kind: decide.KindNone, why: decide.ReasonInSync},
		{name: "zonal policy matching the replicas' zones is in sync",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("zonal"), fixture.WithAffinity(fixture.AffinityOf(fixture.Zone("b"), fixture.Zone("a"))))),
			kind: decide.KindNone, why: decide.ReasonInSync},
		{name: "anywhere policy without affinity is in sync",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("anywhere"))),
			kind: decide.KindNone, why: decide.ReasonInSync},
		{name: "default policy without affinity is in sync",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("default-sc"))),
			kind: decide.KindNone, why: decide.ReasonInSync},

		// No StorageClass and no policy on the PV: a static PV, maybe pinned by
		// hand to its only replica. It once got the driver default and lost
		// its affinity although nothing had moved.
		{name: "no storage class and no policy on the PV is skipped with a warning",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithAffinity(fixture.AffinityOf(fixture.Host("n1"))))),
			kind: decide.KindNone, why: decide.ReasonNoStorageClass, warn: true},
		{name: "no storage class but an override annotation is repaired",
			in: fxInput(fixture.PV("pv", "pvc-1", fixture.WithAnnotation("override.piraeus.io/p", "false"),
				fixture.WithAffinity(fixture.AffinityOf(fixture.Host("n1"))))),
			cfg:  &noGrace,
			kind: decide.KindReplace, why: decide.ReasonDrifted, want: []decide.Segment{fixture.Host("n1"), fixture.Host("n2")}},

		// The volume definition's saved-state slot is not free.
		{name: "drifted PV waits while another PV's saved state holds its slot",
			in:   withSlot(fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"), fixture.WithAffinity(fixture.AffinityOf(fixture.Host("n4"))))), decide.Slot{Owner: "other-pv"}),
			cfg:  &noGrace,
			kind: decide.KindNone, why: decide.ReasonDuplicateHandle, warn: true, ref: ref},
		{name: "drifted PV is not repaired over an unreadable saved state",
			in: withSlot(fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"), fixture.WithAffinity(fixture.AffinityOf(fixture.Host("n4"))))),
				decide.Slot{Unreadable: errors.New("saved PV is not valid JSON")}),
			cfg:  &noGrace,
			kind: decide.KindNone, why: decide.ReasonInvalidSavedState, warn: true, ref: ref},
		{name: "in-sync PV is in sync whatever its slot holds",
			in:   withSlot(fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"), fixture.WithAffinity(n1n2))), decide.Slot{Owner: "other-pv"}),
			kind: decide.KindNone, why: decide.ReasonInSync},
		{name: "storage class missing but annotation gives the policy",
			in: fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("gone"), fixture.WithAnnotation("override.piraeus.io/x", "false"),
				fixture.WithAffinity(n1n2))),
			kind: decide.KindNone, why: decide.ReasonInSync},

		// Drifted: replace with the affinity of the current replicas.
		{name: "replica moved from n2 to n4 under local policy",
			in: withRD(fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"), fixture.WithAffinity(n1n2))),
				func(rd *decide.RDView) {
					rd.Resources = []decide.Resource{{Name: "pvc-1", Node: "n1"}, {Name: "pvc-1", Node: "n4"}}
				}),
			kind: decide.KindReplace, why: decide.ReasonDrifted, want: []decide.Segment{fixture.Host("n1"), fixture.Host("n4")}, ref: ref},
		{name: "stale extra node under local policy",
			in: fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"),
				fixture.WithAffinity(fixture.AffinityOf(fixture.Host("n1"), fixture.Host("n2"), fixture.Host("old"))))),
			kind: decide.KindReplace, why: decide.ReasonDrifted, want: []decide.Segment{fixture.Host("n1"), fixture.Host("n2")}},
		{name: "local policy without affinity",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"))),
			kind: decide.KindReplace, why: decide.ReasonDrifted, want: []decide.Segment{fixture.Host("n1"), fixture.Host("n2")}},
		{name: "zonal policy with hostname affinity",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("zonal"), fixture.WithAffinity(n1n2))),
			kind: decide.KindReplace, why: decide.ReasonDrifted, want: []decide.Segment{fixture.Zone("a"), fixture.Zone("b")}},
		{name: "anywhere policy with affinity drops the affinity",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("anywhere"), fixture.WithAffinity(n1n2))),
			kind: decide.KindReplace, why: decide.ReasonDrifted, want: nil},
		{name: "volume context policy is honoured",
			in: fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("anywhere"), fixture.WithAffinity(n1n2),
				fixture.WithVolumeAttributes(map[string]string{decide.VolumeContextMarker: "true", decide.VolumeContextPolicyKey: zoneRule}))),
			kind: decide.KindReplace, why: decide.ReasonDrifted, want: []decide.Segment{fixture.Zone("a"), fixture.Zone("b")}},
		{name: "affinity with a NotIn term is replaced",
			in: fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"), fixture.WithAffinity(fixture.Affinity(corev1.NodeSelectorTerm{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: decide.HostnameKey, Operator: corev1.NodeSelectorOpNotIn, Values: []string{"n3"}}},
			})))),
			kind: decide.KindReplace, why: decide.ReasonDrifted, want: []decide.Segment{fixture.Host("n1"), fixture.Host("n2")}},

		// Skips.
		{name: "PV of another driver",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithDriver("other.csi.example.com"), fixture.WithSC("local"))),
			kind: decide.KindNone, why: decide.ReasonForeignDriver},
		{name: "PV without CSI source",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithoutCSI(), fixture.WithSC("local"))),
			kind: decide.KindNone, why: decide.ReasonNotCSI},
		{name: "skip annotation set",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"), fixture.WithAnnotation(decide.SkipAnnotation, "yes"))),
			kind: decide.KindNone, why: decide.ReasonSkipAnnotation},
		{name: "empty skip annotation does not skip",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"), fixture.WithAnnotation(decide.SkipAnnotation, ""))),
			kind: decide.KindReplace, why: decide.ReasonDrifted, want: []decide.Segment{fixture.Host("n1"), fixture.Host("n2")}},
		{name: "skip property on the resource definition",
			in:   withRD(fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"))), func(rd *decide.RDView) { rd.Skip = "true" }),
			kind: decide.KindNone, why: decide.ReasonSkipProperty},
		{name: "empty skip property does not skip",
			in:   withRD(fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"))), func(rd *decide.RDView) { rd.Skip = "" }),
			kind: decide.KindReplace, why: decide.ReasonDrifted, want: []decide.Segment{fixture.Host("n1"), fixture.Host("n2")}},
		{name: "released PV",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"), fixture.WithPhase(corev1.VolumeReleased))),
			kind: decide.KindNone, why: decide.ReasonReleased},
		{name: "terminating PV",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"), fixture.WithDeleting())),
			kind: decide.KindNone, why: decide.ReasonTerminating},
		{name: "PV younger than the grace period",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"), fixture.WithCreated(fixture.Now.Add(-time.Minute)))),
			kind: decide.KindNone, why: decide.ReasonGracePeriod},
		{name: "PV exactly as old as the grace period is decided",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"), fixture.WithCreated(fixture.Now.Add(-5*time.Minute)))),
			kind: decide.KindReplace, why: decide.ReasonDrifted, want: []decide.Segment{fixture.Host("n1"), fixture.Host("n2")}},
		{name: "grace period 0 disables it",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"), fixture.WithCreated(fixture.Now))),
			cfg:  &noGrace,
			kind: decide.KindReplace, why: decide.ReasonDrifted, want: []decide.Segment{fixture.Host("n1"), fixture.Host("n2")}},

		// LINSTOR does not say enough.
		{name: "malformed volume handle warns",
			in:   fxInput(fixture.PV("pv", "pvc-1/x", fixture.WithSC("local"))),
			kind: decide.KindNone, why: decide.ReasonMalformedHandle, warn: true},
		{name: "no resource definition",
			in:   decide.Input{PV: fixture.PV("pv", "pvc-1", fixture.WithSC("local")), Nodes: fxNodes(), StorageClass: fxStorageClasses["local"], Now: fixture.Now},
			kind: decide.KindNone, why: decide.ReasonNoRD, ref: ref},
		{name: "no volume definition for rd/1",
			in:   fxInput(fixture.PV("pv", "pvc-1/1", fixture.WithSC("local"))),
			kind: decide.KindNone, why: decide.ReasonNoVD, ref: decide.VolumeRef{RD: "pvc-1", Volume: 1}},
		{name: "resource definition without resources",
			in:   withRD(fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"))), func(rd *decide.RDView) { rd.Resources = nil }),
			kind: decide.KindNone, why: decide.ReasonNoResources},
		{name: "no healthy diskful replica",
			in: withRD(fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"), fixture.WithAffinity(n1n2))), func(rd *decide.RDView) {
				rd.Resources = []decide.Resource{{Name: "pvc-1", Node: "n1", Flags: []string{"DELETE"}},
					{Name: "pvc-1", Node: "n2", Flags: []string{"FAILED_DEPLOYMENT"}},
					{Name: "pvc-1", Node: "n3", Flags: []string{"DISKLESS", "TIE_BREAKER"}}}
			}),
			kind: decide.KindNone, why: decide.ReasonNoDiskful},
		{name: "every diskful node unknown warns",
			in:   withNodes(fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"))), map[string]decide.Segment{"n3": {fixture.ZoneKey: "a"}}),
			kind: decide.KindNone, why: decide.ReasonUnknownNodes, warn: true},
		// LINSTOR CSI fails rather than compute a topology without a replica
		// node's properties; here the unknown n2 lacks a zone, which would
		// widen the zonal PV to "anywhere".
		{name: "some diskful node unknown warns instead of widening the affinity",
			in: withNodes(fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("zonal"), fixture.WithAffinity(fixture.AffinityOf(fixture.Zone("a"), fixture.Zone("b"))))),
				map[string]decide.Segment{"n1": {fixture.ZoneKey: "a"}}),
			kind: decide.KindNone, why: decide.ReasonUnknownNodes, warn: true},
		{name: "invalid annotation policy warns",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"), fixture.WithAnnotation("override.piraeus.io/x", "{}"))),
			kind: decide.KindNone, why: decide.ReasonInvalidPolicy, warn: true},
		{name: "invalid storage class policy warns",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("broken"))),
			kind: decide.KindNone, why: decide.ReasonInvalidPolicy, warn: true},
		{name: "storage class missing warns",
			in:   fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("gone"), fixture.WithAffinity(n1n2))),
			kind: decide.KindNone, why: decide.ReasonMissingSC, warn: true},
	})
}

func TestDecideMultiVolumeResourceDefinition(t *testing.T) {
	rd := fixture.RD("rd", 2, fixture.Res("n1"), fixture.Res("n4"), fixture.Res("n2", "DISKLESS"))
	stale := fixture.AffinityOf(fixture.Host("n1"), fixture.Host("n2"))
	current := fixture.AffinityOf(fixture.Host("n4"), fixture.Host("n1"))
	cases := []struct {
		name string
		pv   *corev1.PersistentVolume
		kind decide.Kind
		ref  decide.VolumeRef
	}{
		{"volume 0 drifted", fixture.PV("pv-a", "rd", fixture.WithSC("local"), fixture.WithAffinity(stale)), decide.KindReplace, decide.VolumeRef{RD: "rd"}},
		{"volume 1 drifted", fixture.PV("pv-b", "rd/1", fixture.WithSC("local"), fixture.WithAffinity(stale)), decide.KindReplace, decide.VolumeRef{RD: "rd", Volume: 1}},
		{"volume 0 current", fixture.PV("pv-c", "rd/0", fixture.WithSC("local"), fixture.WithAffinity(current)), decide.KindNone, decide.VolumeRef{RD: "rd"}},
		{"volume 1 current", fixture.PV("pv-d", "rd/1", fixture.WithSC("local"), fixture.WithAffinity(current)), decide.KindNone, decide.VolumeRef{RD: "rd", Volume: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := decide.Input{PV: tc.pv, RD: rd, Nodes: fxNodes(), StorageClass: fxStorageClasses["local"], Now: fixture.Now}
			a := decide.Decide(in, fxConfig)
			if a.Kind != tc.kind || a.Ref != tc.ref || a.Name != tc.pv.Name {
				t.Fatalf("Decide = %s/%s ref %v name %s (%s), want %s ref %v name %s",
					a.Kind, a.Reason, a.Ref, a.Name, a.Message, tc.kind, tc.ref, tc.pv.Name)
			}
			if a.Kind == decide.KindReplace {
				got, _ := fixture.AffinitySegments(a.Affinity)
				if !fixture.SameSegmentSet(got, []decide.Segment{fixture.Host("n1"), fixture.Host("n4")}) {
					t.Errorf("replace with %s, want the RD's replicas n1, n4", decide.DescribeAffinity(a.Affinity))
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
	moved := func(leaving ...string) func(rd *decide.RDView) {
		return func(rd *decide.RDView) {
			rd.Resources = []decide.Resource{fixture.Res("n1"), fixture.Res("n2", leaving...), fixture.Res("n4"), fixture.Res("n3", "DISKLESS", "TIE_BREAKER")}
			for i := range rd.Resources {
				rd.Resources[i].Name = "pvc-1"
			}
		}
	}
	withRD := func(in decide.Input, edit func(rd *decide.RDView)) decide.Input { edit(in.RD); return in }
	local := func(aff ...decide.Segment) decide.Input {
		return fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("local"), fixture.WithAffinity(fixture.AffinityOf(aff...))))
	}
	runDecideCases(t, []decideCase{
		{name: "a replica in its first phase (DRBD_DELETE) no longer counts",
			in:   withRD(local(fixture.Host("n1"), fixture.Host("n2")), moved("DRBD_DELETE")),
			kind: decide.KindReplace, why: decide.ReasonDrifted, want: []decide.Segment{fixture.Host("n1"), fixture.Host("n4")}},
		{name: "nor in its second phase (DELETE and DRBD_DELETE)",
			in:   withRD(local(fixture.Host("n1"), fixture.Host("n2")), moved("DELETE", "DRBD_DELETE")),
			kind: decide.KindReplace, why: decide.ReasonDrifted, want: []decide.Segment{fixture.Host("n1"), fixture.Host("n4")}},
		{name: "a PV already on the replicas that stay is in sync through the window",
			in:   withRD(local(fixture.Host("n1"), fixture.Host("n4")), moved("DRBD_DELETE")),
			kind: decide.KindNone, why: decide.ReasonInSync},
		{name: "an affinity that still names the leaving replica is narrowed",
			in:   withRD(local(fixture.Host("n1"), fixture.Host("n2"), fixture.Host("n4")), moved("DRBD_DELETE")),
			kind: decide.KindReplace, why: decide.ReasonDrifted, want: []decide.Segment{fixture.Host("n1"), fixture.Host("n4")}},
		{name: "the leaving replica's zone is dropped under a zonal policy",
			in: withRD(fxInput(fixture.PV("pv", "pvc-1", fixture.WithSC("zonal"), fixture.WithAffinity(fixture.AffinityOf(fixture.Zone("a"), fixture.Zone("b"))))),
				moved("DRBD_DELETE")),
			kind: decide.KindReplace, why: decide.ReasonDrifted, want: []decide.Segment{fixture.Zone("a"), fixture.Zone("c")}},
		{name: "a deletion undone (flag cleared) counts the replica again",
			in:   withRD(local(fixture.Host("n1"), fixture.Host("n4")), moved()),
			kind: decide.KindReplace, why: decide.ReasonDrifted, want: []decide.Segment{fixture.Host("n1"), fixture.Host("n2"), fixture.Host("n4")}},
		{name: "every diskful replica being deleted leaves the PV alone",
			in: withRD(local(fixture.Host("n1"), fixture.Host("n2")), func(rd *decide.RDView) {
				rd.Resources = []decide.Resource{{Name: "pvc-1", Node: "n1", Flags: []string{"DRBD_DELETE"}},
					{Name: "pvc-1", Node: "n2", Flags: []string{"DELETE", "DRBD_DELETE"}}}
			}),
			kind: decide.KindNone, why: decide.ReasonNoDiskful},
		{name: "an INACTIVE replica still counts, as in LINSTOR CSI",
			in:   withRD(local(fixture.Host("n1"), fixture.Host("n2"), fixture.Host("n4")), moved("INACTIVE")),
			kind: decide.KindNone, why: decide.ReasonInSync},
	})
}

func TestDecideSavedState(t *testing.T) {
	live := fixture.PV("pv", "pvc-1", fixture.WithSC("local"), fixture.WithAffinity(fixture.AffinityOf(fixture.Host("old"))))
	replacement := decide.Replacement(live, fixture.AffinityOf(fixture.Host("n1"), fixture.Host("n2")))
	saved := &decide.SavedState{Ref: decide.VolumeRef{RD: "pvc-1"}, PV: replacement}
	foreign := &decide.SavedState{Ref: decide.VolumeRef{RD: "pvc-1"},
		PV: decide.Replacement(fixture.PV("pv", "pvc-1", fixture.WithDriver("other.csi.example.com")), nil)}
	invalid := &decide.SavedState{Ref: decide.VolumeRef{RD: "pvc-1", Volume: 2}, Err: errors.New("saved PV is not valid JSON")}

	cases := []struct {
		name     string
		pv       *corev1.PersistentVolume
		saved    *decide.SavedState
		kind     decide.Kind
		why      decide.Reason
		warn     bool
		wantName string
	}{
		{"missing PV is recreated", nil, saved, decide.KindRecreate, decide.ReasonInterruptedReplace, false, "pv"},
		{"terminating PV is recreated", fixture.PV("pv", "pvc-1", fixture.WithDeleting()), saved, decide.KindRecreate, decide.ReasonInterruptedReplace, false, "pv"},
		{"live PV clears the state", live, saved, decide.KindClearSaved, decide.ReasonStaleSavedState, false, "pv"},
		{"live PV with skip annotation still clears the state",
			fixture.PV("pv", "pvc-1", fixture.WithAnnotation(decide.SkipAnnotation, "true")), saved, decide.KindClearSaved, decide.ReasonStaleSavedState, false, "pv"},
		{"released live PV still clears the state",
			fixture.PV("pv", "pvc-1", fixture.WithPhase(corev1.VolumeReleased)), saved, decide.KindClearSaved, decide.ReasonStaleSavedState, false, "pv"},
		{"invalid state without PV warns and is left alone", nil, invalid, decide.KindNone, decide.ReasonInvalidSavedState, true, ""},
		{"invalid state with live PV warns and is left alone", live, invalid, decide.KindNone, decide.ReasonInvalidSavedState, true, "pv"},
		{"state of another driver is left alone", nil, foreign, decide.KindNone, decide.ReasonForeignDriver, false, "pv"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := decide.Input{PV: tc.pv, Saved: tc.saved, RD: fxRD(), Nodes: fxNodes(), StorageClass: fxStorageClasses["local"], Now: fixture.Now}
			a := decide.Decide(in, fxConfig)
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
			if a.Kind == decide.KindRecreate {
				got, _ := fixture.AffinitySegments(a.Affinity)
				if !fixture.SameSegmentSet(got, []decide.Segment{fixture.Host("n1"), fixture.Host("n2")}) {
					t.Errorf("recreate with %s, want the saved affinity", decide.DescribeAffinity(a.Affinity))
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
	policies := []decide.Policy{
		decide.PolicyAnywhere,
		decide.PolicyLocalOnly,
		{{FromSame: []string{fixture.ZoneKey}}},
		{{FromSame: []string{fixture.Region}}, {FromSame: []string{fixture.ZoneKey}}},
		{{FromSame: []string{fixture.Region, fixture.ZoneKey}}},
		{{FromSame: []string{fixture.ZoneKey, decide.HostnameKey}}, {FromSame: []string{fixture.Region}}},
	}
	flagSets := [][]string{nil, nil, nil, {"DISKLESS"}, {"DISKLESS", "TIE_BREAKER"}, {"DELETE"}, {"FAILED_DEPLOYMENT"}}
	pick := func(xs ...string) string { return xs[rng.Intn(len(xs))] }

	for i := 0; i < 3000; i++ {
		nodes := map[string]decide.Segment{}
		var resources []decide.Resource
		for n := 0; n < 1+rng.Intn(6); n++ {
			name := fmt.Sprintf("n%d", n)
			s := decide.Segment{}
			if rng.Intn(10) < 8 {
				s[fixture.ZoneKey] = pick("a", "b", "c")
			}
			if rng.Intn(10) < 7 {
				s[fixture.Region] = pick("r1", "r2")
			}
			if rng.Intn(10) < 5 {
				s[decide.HostnameKey] = name
			}
			if rng.Intn(10) < 9 {
				nodes[name] = s
			}
			if rng.Intn(10) < 6 {
				resources = append(resources, decide.Resource{Name: "rd", Node: name, Flags: flagSets[rng.Intn(len(flagSets))]})
			}
		}
		if len(resources) == 0 {
			resources = append(resources, decide.Resource{Name: "rd", Node: "n0"})
		}
		policy := policies[rng.Intn(len(policies))]
		topo := decide.AccessibleTopology(resources, nodes, policy)

		var aff *corev1.VolumeNodeAffinity
		if !topo.Anywhere && len(topo.Segments) > 0 {
			aff = shuffledAffinity(rng, topo.Segments)
		}
		pv := fixture.PV("pv", "rd", fixture.WithAnnotation("override.piraeus.io/policy", policy.String()), fixture.WithAffinity(aff))
		in := decide.Input{PV: pv, RD: &decide.RDView{Name: "rd", Volumes: map[int]string{0: ""}, Resources: resources}, Nodes: nodes, Now: fixture.Now}
		desc := fmt.Sprintf("case %d: policy %s, resources %v, nodes %v, affinity %s", i, policy, resources, nodes, decide.DescribeAffinity(aff))

		a := decide.Decide(in, fxConfig)
		if a.Kind == decide.KindReplace {
			t.Fatalf("%s: matching PV replaced (%s)", desc, a.Message)
		}
		switch a.Reason {
		case decide.ReasonInSync, decide.ReasonNoDiskful, decide.ReasonUnknownNodes:
		default:
			t.Fatalf("%s: unexpected decision %s/%s (%s)", desc, a.Kind, a.Reason, a.Message)
		}

		wrong := pv.DeepCopy()
		wrong.Spec.NodeAffinity = fixture.AffinityOf(fixture.Host("elsewhere"))
		in.PV = wrong
		a = decide.Decide(in, fxConfig)
		if a.Kind != decide.KindReplace {
			continue
		}
		fixed := decide.Replacement(wrong, a.Affinity)
		in.PV = fixed
		if again := decide.Decide(in, fxConfig); again.Reason != decide.ReasonInSync {
			t.Fatalf("%s: after replacing with %s the decision is %s/%s (%s), want in-sync",
				desc, decide.DescribeAffinity(a.Affinity), again.Kind, again.Reason, again.Message)
		}
	}
}

// shuffledAffinity renders segments as terms in random order, with random
// expression order inside each term and a random term repeated.
func shuffledAffinity(rng *rand.Rand, segs []decide.Segment) *corev1.VolumeNodeAffinity {
	var terms []corev1.NodeSelectorTerm
	for _, s := range segs {
		pairs := fixture.SegPairs(s)
		rng.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
		terms = append(terms, fixture.Term(pairs...))
	}
	if rng.Intn(3) == 0 {
		terms = append(terms, terms[rng.Intn(len(terms))])
	}
	rng.Shuffle(len(terms), func(i, j int) { terms[i], terms[j] = terms[j], terms[i] })
	return fixture.Affinity(terms...)
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

package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// One bed, every kind of volume the sidecar meets, and replica moves for
// all of them. The sidecar must rewrite exactly the PVs whose accessible
// topology changed, and leave alone: moves that keep the topology (within
// a zone, or anywhere), PVs of another driver, PVs it is told to skip (PV
// annotation, resource definition property), PVs whose volume the CSI
// driver says does not exist.
func TestPoliciesAndExclusions(t *testing.T) {
	b := startBed(t, testbed.Options{})
	ctx := testContext(t, 8*time.Minute)
	createStorageClasses(ctx, t, b)

	// Provisioned one at a time (see TestFreshlyProvisionedVolumesAreLeftAlone).
	provision := func(c testbed.Claim) *corev1.PersistentVolume { return provisionOne(ctx, t, b, c) }
	zoneVol := provision(testbed.Claim{Name: "zone-vol", StorageClass: "zone", Node: "n1"})
	anyVol := provision(testbed.Claim{Name: "any-vol", StorageClass: "anywhere", Node: "n2"})
	strictVol := provision(testbed.Claim{Name: "strict-vol", StorageClass: "strict", Node: "n1"})
	skipAnn := provision(testbed.Claim{Name: "skip-annotation", StorageClass: "strict", Node: "n1"})
	skipProp := provision(testbed.Claim{Name: "skip-property", StorageClass: "strict", Node: "n1"})
	rdOf := func(pv *corev1.PersistentVolume) string { return pv.Spec.CSI.VolumeHandle }

	// An operator opts a PV out with the annotation, another volume with
	// the property on its resource definition.
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{skipAnnotation: "true"}}})
	must(t, err)
	_, err = b.Kube.CoreV1().PersistentVolumes().Patch(ctx, skipAnn.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	must(t, err)
	must(t, b.Sim.SetRDProps(rdOf(skipProp), map[string]string{skipRDProperty: "true"}))

	// A PV whose volume the CSI driver disowns: LINSTOR CSI v1.6.4 takes a
	// resource definition with two volumes for none of its own and answers
	// ControllerGetVolume with NotFound, so the sidecar must not touch it
	// (TestMultiVolumeResourceDefinitions covers such volumes for drivers
	// that know them).
	const gibKiB = 1 << 20
	must(t, b.Sim.CreateVolume(linstorsim.VolumeSpec{Name: "multi", SizesKiB: []uint64{gibKiB, gibKiB}, Diskful: []string{"n1"}}))
	wctx, cancel := within(ctx)
	_, err = b.CreateStaticVolume(wctx, testbed.StaticVolume{
		PV: "disowned", Claim: "disowned", Handle: "multi", StorageClass: "strict", Affinity: testbed.AffinityOf(testbed.Hosts("n1")...),
	})
	cancel()
	must(t, err)
	// A PV of another CSI driver whose handle names a LINSTOR resource
	// definition that will move: not the sidecar's business.
	wctx, cancel = within(ctx)
	_, err = b.CreateStaticVolume(wctx, testbed.StaticVolume{
		PV: "foreign", Claim: "foreign", Driver: "other.csi.example.com", Handle: rdOf(strictVol),
		Affinity: testbed.AffinityOf(testbed.Hosts("n1")...),
	})
	cancel()
	must(t, err)

	all := []string{zoneVol.Name, anyVol.Name, strictVol.Name, skipAnn.Name, skipProp.Name, "disowned", "foreign"}
	wctx, cancel = within(ctx)
	must(t, b.WaitCycles(wctx, 3))
	cancel()
	start := snapshotPVs(ctx, t, b, all...)

	t.Run("MovesThatKeepTheTopologyChangeNothing", func(t *testing.T) {
		must(t, b.Sim.MoveReplica(rdOf(zoneVol), "n1", "n2")) // both in zone-a
		must(t, b.Sim.MoveReplica(rdOf(anyVol), "n2", "n3"))  // anywhere stays anywhere
		wctx, cancel := within(ctx)
		defer cancel()
		must(t, b.WaitCycles(wctx, 3))
		assertUntouched(ctx, t, b, start)
		if n := repairs(ctx, t, b, nil); n != 0 {
			t.Errorf("sidecar counted %v repairs; no topology changed", n)
		}
		if got := getPV(ctx, t, b, anyVol.Name).Spec.NodeAffinity; got != nil {
			t.Errorf("anywhere PV has affinity %s", testbed.DescribeAffinity(got))
		}
	})

	must(t, b.Sim.MoveReplica(rdOf(zoneVol), "n2", "n3")) // to zone-b
	for _, pv := range []*corev1.PersistentVolume{strictVol, skipAnn, skipProp} {
		must(t, b.Sim.MoveReplica(rdOf(pv), "n1", "n4"))
	}
	must(t, b.Sim.MoveReplica("multi", "n1", "n3"))

	t.Run("ZonePolicyFollowsTheReplicaToItsNewZone", func(t *testing.T) {
		wctx, cancel := within(ctx)
		defer cancel()
		_, err := b.WaitPVAffinity(wctx, zoneVol.Name, testbed.Zones("zone-b")...)
		must(t, err)
		_, err = b.WaitClaimBound(wctx, "zone-vol", zoneVol.Name)
		must(t, err)
		_, err = b.CreatePod(ctx, "zone-app", "zone-vol", nil)
		must(t, err)
		node, err := b.WaitPodScheduled(wctx, "zone-app")
		must(t, err)
		if zoneOf(node) != "zone-b" {
			t.Errorf("zone-app scheduled on %s (%s), its data is in zone-b", node, zoneOf(node))
		}
	})

	t.Run("StrictPolicyFollowsTheReplica", func(t *testing.T) {
		wctx, cancel := within(ctx)
		defer cancel()
		_, err := b.WaitPVAffinity(wctx, strictVol.Name, testbed.Hosts("n4")...)
		must(t, err)
		_, err = b.WaitClaimBound(wctx, "strict-vol", strictVol.Name)
		must(t, err)
	})

	t.Run("APVWhoseVolumeTheDriverDisownsIsNotRewritten", func(t *testing.T) {
		ev := waitEvent(ctx, t, b, "", "PersistentVolume", "disowned", "VolumeAffinityNotHandled")
		if !strings.Contains(ev, "does not exist") {
			t.Errorf("event %q does not say the driver denies the volume", ev)
		}
		assertUntouched(ctx, t, b, map[string]pvSnapshot{"disowned": start["disowned"]})
	})

	t.Run("SkippedAndForeignPVsAreLeftAlone", func(t *testing.T) {
		// The repairs above happened in these cycles too: whatever the
		// sidecar would do about the rest, it has done.
		wctx, cancel := within(ctx)
		defer cancel()
		must(t, b.WaitCycles(wctx, 3))
		keep := map[string]pvSnapshot{}
		for _, name := range []string{skipAnn.Name, skipProp.Name, "foreign", anyVol.Name, "disowned"} {
			keep[name] = start[name]
		}
		assertUntouched(ctx, t, b, keep)
		for _, name := range []string{skipAnn.Name, skipProp.Name, "foreign"} {
			for _, pvName := range actedOn(t, b) {
				if pvName == name {
					t.Errorf("sidecar acted on %s", name)
				}
			}
		}
		m, err := b.Metrics(ctx)
		must(t, err)
		for reason, want := range map[string]float64{"skip-annotation": 1, "skip-property": 1} {
			if got := m.Sum("linstor_affinity_sidecar_pvs", map[string]string{"status": "skipped", "reason": reason}); got != want {
				t.Errorf("pvs{status=skipped,reason=%s} = %v, want %v; series %+v", reason, got, want, m.Series("linstor_affinity_sidecar_pvs"))
			}
		}
	})

	// Exactly the two PVs whose topology changed were rewritten, once each.
	if n := repairs(ctx, t, b, map[string]string{"action": "replace", "result": "success"}); n != 2 {
		t.Errorf("repairs_total{action=replace,result=success} = %v, want 2 (zone, strict)", n)
	}
	assertNoVolumeDeleted(t, b)
	for _, pv := range []*corev1.PersistentVolume{zoneVol, strictVol} {
		assertNoSavedState(t, b, rdOf(pv), 1)
	}
}

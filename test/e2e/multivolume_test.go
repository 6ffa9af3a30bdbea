package e2e

import (
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// LINSTOR CSI >= 1.11 puts several PVs on one resource definition, with
// handles rd and rd/1. When the replicas move, every one of those PVs must
// follow, each keeping its own handle and claim.
//
// The only LINSTOR CSI here, v1.6.4, neither makes such volumes nor knows
// them (ControllerGetVolume says NotFound, see TestPoliciesAndExclusions),
// so this test creates the PVs itself and runs the sidecar in standalone
// mode (--csi-address="" --driver-name=...), where it does not ask the
// driver.
func TestMultiVolumeResourceDefinitions(t *testing.T) {
	began := time.Now()
	b := startBed(t, testbed.Options{SidecarArgs: []string{"--csi-address=", "--driver-name=" + testbed.DriverName}})
	ctx := testContext(t, 5*time.Minute)
	createStorageClasses(ctx, t, b)

	const gibKiB = 1 << 20
	must(t, b.Sim.CreateVolume(linstorsim.VolumeSpec{Name: "shared", SizesKiB: []uint64{gibKiB, 2 * gibKiB, gibKiB}, Diskful: []string{"n1", "n2"}}))
	// Volumes 0 and 1 have PVs; volume 2 has none, which must not matter.
	handles := map[string]string{"shared-0": "shared", "shared-1": "shared/1"}
	for name, handle := range handles {
		wctx, cancel := within(ctx)
		_, err := b.CreateStaticVolume(wctx, testbed.StaticVolume{
			PV: name, Claim: name, Handle: handle, StorageClass: "strict-2",
			Affinity: testbed.AffinityOf(testbed.Hosts("n2", "n1")...),
		})
		cancel()
		must(t, err)
	}
	step(t, began, "PVs of shared and shared/1 bound")
	wctx, cancel := within(ctx)
	must(t, b.WaitCycles(wctx, 3))
	cancel()
	before := snapshotPVs(ctx, t, b, "shared-0", "shared-1")
	assertUntouched(ctx, t, b, before)
	if n := repairs(ctx, t, b, nil); n != 0 {
		t.Fatalf("sidecar counted %v repairs of in-sync PVs of a multi-volume resource definition", n)
	}

	must(t, b.Sim.MoveReplica("shared", "n1", "n4"))
	step(t, began, "replica of shared moved from n1 to n4")
	wctx, cancel = within(ctx)
	defer cancel()
	for name, handle := range handles {
		pv, err := b.WaitPVAffinity(wctx, name, testbed.Hosts("n2", "n4")...)
		must(t, err)
		if pv.Spec.CSI.VolumeHandle != handle {
			t.Errorf("PV %s has handle %s after the repair, want %s", name, pv.Spec.CSI.VolumeHandle, handle)
		}
		pvc, err := b.WaitClaimBound(wctx, name, name)
		must(t, err)
		if ref := pv.Spec.ClaimRef; ref == nil || ref.UID != pvc.UID {
			t.Errorf("PV %s claimRef %+v, want claim %s (%s)", name, ref, name, pvc.UID)
		}
	}
	step(t, began, "both PVs repaired and bound")
	if _, err := b.CreatePod(ctx, "shared-app", "shared-1", map[string]string{testbed.ZoneKey: "zone-b"}); err != nil {
		t.Fatal(err)
	}
	node, err := b.WaitPodScheduled(wctx, "shared-app")
	must(t, err)
	step(t, began, "shared-app scheduled on %s", node)
	if node != "n4" {
		t.Errorf("shared-app (zone-b) scheduled on %s, the zone-b replica of shared/1 is on n4", node)
	}
	if n := repairs(ctx, t, b, map[string]string{"action": "replace", "result": "success"}); n != 2 {
		t.Errorf("repairs_total{action=replace,result=success} = %v, want 2", n)
	}
	assertNoSavedState(t, b, "shared", 3)
	assertNoVolumeDeleted(t, b)
}

package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// A node drain moves many volumes at once. Next to the real
// external-provisioner every one of them must be repaired at the first
// attempt: a failed attempt means a Warning Event on the PV, an error line
// and an error in the metrics, for an operator to puzzle over. (The
// provisioner removes its PV finalizer the moment a replace sets the
// reclaim policy to Retain, which bumps the PV's resourceVersion.)
func TestDrainedNodeVolumesAreRepairedAtTheFirstAttempt(t *testing.T) {
	b := startBed(t, testbed.Options{})
	ctx := testContext(t, 6*time.Minute)
	createStorageClasses(ctx, t, b)

	const volumes = 20
	var claims []testbed.Claim
	for i := range volumes {
		claims = append(claims, testbed.Claim{Name: fmt.Sprintf("bulk-%02d", i), StorageClass: "strict", Node: "n1"})
	}
	wctx, cancel := within(ctx)
	pvs, err := b.ProvisionVolumes(wctx, claims...)
	cancel()
	must(t, err)
	wctx, cancel = within(ctx)
	must(t, b.WaitCycles(wctx, 2))
	cancel()

	moves, err := b.Sim.EvacuateNode("n1")
	must(t, err)
	if len(moves) != volumes {
		t.Fatalf("evacuating n1 moved %d replicas, want %d", len(moves), volumes)
	}
	wctx, cancel = within(ctx)
	defer cancel()
	for _, c := range claims {
		pv := pvs[c.Name]
		want := expected(t, b, pv.Spec.CSI.VolumeHandle, "strict")
		if _, err := b.WaitPVAffinity(wctx, pv.Name, want...); err != nil {
			t.Fatal(err)
		}
		if _, err := b.WaitClaimBound(wctx, c.Name, pv.Name); err != nil {
			t.Fatal(err)
		}
	}
	if n := repairs(ctx, t, b, map[string]string{"action": "replace", "result": "success"}); n != volumes {
		t.Errorf("repairs_total{action=replace,result=success} = %v, want %d", n, volumes)
	}
	if n := repairs(ctx, t, b, map[string]string{"result": "error"}); n != 0 {
		failed, _ := b.SidecarLog("Repair failed; will decide again next cycle")
		for _, l := range failed {
			t.Logf("sidecar: %s", l.Raw)
		}
		t.Errorf("repairs_total{result=error} = %v, want 0: %d failed attempts for %d drifted PVs", n, len(failed), volumes)
	}
	assertNoVolumeDeleted(t, b)
}

package e2e

import (
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// A pod blocked by a stale PV affinity is served at once, by reads of its
// volumes only. The sidecar reads LINSTOR in full every 10 minutes, so only
// its first full read falls within the test; the strict volume's replica
// moves off n1, n1 goes away, the recreated pod is unschedulable, and the
// real kube-scheduler places it on n4 within seconds of the move.
func TestBlockedPodIsRepairedWithoutWaitingForAFullRead(t *testing.T) {
	b := startBed(t, testbed.Options{ReconcileRate: 10 * time.Minute})
	ctx := testContext(t, 4*time.Minute)
	createStorageClasses(ctx, t, b)
	old := provisionOne(ctx, t, b, testbed.Claim{Name: "data", StorageClass: "strict", Node: "n1"})
	rd := old.Spec.CSI.VolumeHandle
	if _, err := b.CreatePod(ctx, "db-0", "data", nil); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := within(ctx)
	node, err := b.WaitPodScheduled(wctx, "db-0")
	cancel()
	must(t, err)
	if node != "n1" {
		t.Fatalf("db-0 scheduled on %s, its data is on n1 only", node)
	}
	before, err := b.Metrics(ctx)
	must(t, err)
	if before.Sum(metricFetchCount, nil) < 1 {
		t.Fatalf("no full read before the move; the test needs the first one done")
	}

	moved := time.Now()
	rotateOut(ctx, t, b, rd, "n1", "n4", "db-0", "data")
	wctx, cancel = within(ctx)
	defer cancel()
	node, err = b.WaitPodScheduled(wctx, "db-0")
	must(t, err)
	if node != "n4" {
		t.Fatalf("db-0 scheduled on %s after the repair, its data is on n4 only", node)
	}
	t.Logf("pod scheduled %s after the replica moved", time.Since(moved).Round(10*time.Millisecond))
	if _, err := b.WaitPVAffinity(wctx, old.Name, testbed.Hosts("n4")...); err != nil {
		t.Fatal(err)
	}

	after, err := b.Metrics(ctx)
	must(t, err)
	if full := after.Sum(metricFetchCount, nil) - before.Sum(metricFetchCount, nil); full != 0 {
		t.Errorf("%v full LINSTOR reads between the move and the pod's scheduling; want the blocked pod served by reads of its volume only", full)
	}
	if n := after.Sum(metricPrefix+"blocked_pod_reads_total", nil); n < 1 {
		t.Errorf("blocked_pod_reads_total = %v, want at least 1", n)
	}
	if n := after.Sum(metricPrefix+"blocked_pod_repair_seconds_count", nil); n != 1 {
		t.Errorf("blocked_pod_repair_seconds_count = %v, want 1 (one pod, one PV)", n)
	}
	if n := repairs(ctx, t, b, map[string]string{"action": "replace", "result": "success"}); n != 1 {
		t.Errorf("repairs_total{action=replace,result=success} = %v, want 1", n)
	}
	assertNoVolumeDeleted(t, b)
	assertNoSavedState(t, b, rd, 1)
}

const (
	metricPrefix = "linstor_affinity_sidecar_"
	// metricFetchCount counts full LINSTOR reads (one per full cycle).
	metricFetchCount = metricPrefix + "linstor_fetch_duration_seconds_count"
)

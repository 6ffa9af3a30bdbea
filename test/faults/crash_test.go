package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// The steps of the crash-safe replace (DOMAIN.md section 3), as the fault
// hook names them (sidecar.Step).
var replaceSteps = []string{"save-state", "retain", "delete", "strip-finalizers", "create", "clear-state"}

// TestCrashAfterEveryReplaceStep kills the sidecar with SIGKILL right after
// each step of the replace, while the other PVs of the bed are being
// repaired at the same time, restarts it, and asserts that everything
// converges with nothing lost. Fast subset: one kill per step; full: 20.
func TestCrashAfterEveryReplaceStep(t *testing.T) {
	began := time.Now()
	b, ks := startBed(t, testbed.Options{SidecarArgs: []string{"--workers=4"}})
	ctx := testContext(t, 90*time.Minute)
	w := &world{b: b}
	createClasses(ctx, t, b)
	// Five volumes (the drift brake lets up to five move at once without
	// confirmation): four single-replica, one with two replicas.
	vols := provision(ctx, t, w, "crash", classStrict, "n1", 4)
	vols = append(vols, provision(ctx, t, w, "crash2", classStrict2, "n1", 1)...)
	step(t, began, "%d volumes provisioned", len(vols))

	iterations := rounds(1, 20)
	crashes, repaired, lost := 0, 0, 0
	defer func() { totals.add(len(replaceSteps)*iterations, crashes, repaired, lost, 0) }()
	for it := range iterations {
		for _, s := range replaceSteps {
			ks.arm(t, s)
			moved := w.move(t, vols)
			crashAt := waitKilled(ctx, t, b, s)
			crashes++
			if ks.armed(t) {
				t.Fatalf("the hook killed the sidecar but left the switch armed")
			}
			wctx, cancel := within(ctx)
			must(t, b.RestartSidecar(wctx))
			cancel()
			lost += w.assertSettled(ctx, t)
			if t.Failed() {
				t.Fatalf("round %d, crash after %s (%s): not converged", it+1, s, crashAt)
			}
			repaired += moved
			step(t, began, "round %d: killed after %-16s (%s), restarted, %d PVs repaired, all settled", it+1, s, crashAt, moved)
		}
	}
	if lost != 0 {
		t.Errorf("%d PVs lost", lost)
	}
}

// waitKilled waits until the sidecar killed itself at the armed step and
// returns the PV it was working on, from the hook's last log line.
func waitKilled(ctx context.Context, t *testing.T, b *testbed.Bed, stepName string) string {
	t.Helper()
	wctx, cancel := within(ctx)
	defer cancel()
	pv, err := b.WaitFaultKill(wctx, stepName)
	must(t, err)
	return fmt.Sprintf("pv %s", pv)
}

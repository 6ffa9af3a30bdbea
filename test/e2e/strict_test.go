package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// The headline story: a strict volume's only replica moves off n1 to n4 and
// n1 is rotated out. The pod of the volume, pending on a volume node
// affinity conflict, is placed on n4 by the real kube-scheduler once the
// sidecar rewrote the PV; the claim ends Bound to the same PV name, and
// LINSTOR never lost the volume. Without MutablePVNodeAffinity the PV is
// recreated; with it, it is updated in place and the claim never wavers.
func TestStrictVolumeFollowsItsReplicaWhenTheNodeIsRotatedOut(t *testing.T) {
	for _, tc := range []struct {
		name   string
		gate   bool
		method string
	}{
		{name: "Recreate", gate: false, method: "recreate"},
		{name: "InPlace", gate: true, method: "in-place"},
	} {
		t.Run(tc.name, func(t *testing.T) { strictVolumeFollowsItsReplica(t, tc.gate, tc.method) })
	}
}

func strictVolumeFollowsItsReplica(t *testing.T, gate bool, method string) {
	b := startBed(t, testbed.Options{MutablePVNodeAffinity: gate})
	ctx := testContext(t, 6*time.Minute)
	createStorageClasses(ctx, t, b)

	wctx, cancel := within(ctx)
	pvs, err := b.ProvisionVolumes(wctx, testbed.Claim{Name: "data", StorageClass: "strict", Node: "n1"})
	cancel()
	must(t, err)
	old := pvs["data"]
	rd := old.Spec.CSI.VolumeHandle
	if !testbed.AffinityEquals(old.Spec.NodeAffinity, testbed.Hosts("n1")) {
		t.Fatalf("provisioned PV %s has affinity %s, want n1", old.Name, testbed.DescribeAffinity(old.Spec.NodeAffinity))
	}
	if _, err := b.CreatePod(ctx, "db-0", "data", nil); err != nil {
		t.Fatal(err)
	}
	wctx, cancel = within(ctx)
	node, err := b.WaitPodScheduled(wctx, "db-0")
	cancel()
	must(t, err)
	if node != "n1" {
		t.Fatalf("db-0 scheduled on %s, its data is on n1 only", node)
	}

	// Keep the sidecar off this volume while the node goes away, with the
	// upstream skip property, so the pod is seen pending first.
	must(t, b.Sim.SetRDProps(rd, map[string]string{skipRDProperty: "e2e"}))
	rotateOut(ctx, t, b, rd, "n1", "n4", "db-0", "data")
	wctx, cancel = within(ctx)
	must(t, b.WaitPodUnschedulable(wctx, "db-0", testbed.VolumeAffinityConflict))
	must(t, b.WaitCycles(wctx, 3))
	cancel()
	assertUntouched(ctx, t, b, snapshotPVs(ctx, t, b, old.Name))
	if old.UID != getPV(ctx, t, b, old.Name).UID {
		t.Fatalf("PV %s replaced although its resource definition has %s", old.Name, skipRDProperty)
	}
	if n := repairs(ctx, t, b, nil); n != 0 {
		t.Fatalf("sidecar repaired %v times while the only volume was skipped", n)
	}

	phases := watchClaimPhases(ctx, t, b, "data")
	must(t, b.Sim.SetRDProps(rd, nil, skipRDProperty))

	wctx, cancel = within(ctx)
	defer cancel()
	repaired, err := b.WaitPVAffinity(wctx, old.Name, testbed.Hosts("n4")...)
	must(t, err)
	pvc, err := b.WaitClaimBound(wctx, "data", old.Name)
	must(t, err)
	node, err = b.WaitPodScheduled(wctx, "db-0")
	must(t, err)
	if node != "n4" {
		t.Errorf("db-0 scheduled on %s after the repair, its data is on n4 only", node)
	}
	t.Logf("claim phases seen during the repair: %v", phases())

	// The PV is the same volume with a new affinity: nothing else changed.
	if repaired.Spec.CSI.VolumeHandle != rd || repaired.Spec.CSI.Driver != testbed.DriverName {
		t.Errorf("repaired PV points to %s/%s, want %s/%s", repaired.Spec.CSI.Driver, repaired.Spec.CSI.VolumeHandle, testbed.DriverName, rd)
	}
	if ref := repaired.Spec.ClaimRef; ref == nil || ref.Name != "data" || ref.UID != pvc.UID {
		t.Errorf("repaired PV claimRef %+v, want claim data (%s)", ref, pvc.UID)
	}
	if repaired.Spec.PersistentVolumeReclaimPolicy != old.Spec.PersistentVolumeReclaimPolicy {
		t.Errorf("reclaim policy %s after the repair, was %s", repaired.Spec.PersistentVolumeReclaimPolicy, old.Spec.PersistentVolumeReclaimPolicy)
	}
	if v, ok := repaired.Annotations[testbed.DriverName+"/skip-reclaim"]; ok {
		t.Errorf("repaired PV keeps the replace's skip-reclaim annotation (%q)", v)
	}
	if repaired.Spec.StorageClassName != "strict" || !repaired.Spec.Capacity.Storage().Equal(*old.Spec.Capacity.Storage()) {
		t.Errorf("repaired PV class %q capacity %v, was %q %v", repaired.Spec.StorageClassName, repaired.Spec.Capacity.Storage(),
			old.Spec.StorageClassName, old.Spec.Capacity.Storage())
	}
	// A recreated PV is Pending until the PV binder binds it again; it must
	// get there, to the same claim.
	bound, err := b.WaitPVBound(wctx, old.Name)
	if err != nil {
		t.Errorf("repaired PV never Bound again: %v", err)
	} else if ref := bound.Spec.ClaimRef; ref == nil || ref.UID != pvc.UID {
		t.Errorf("repaired PV Bound with claimRef %+v, want claim data (%s)", ref, pvc.UID)
	}

	updated, err := b.SidecarLog("Updated PV affinity")
	must(t, err)
	if len(updated) != 1 || updated[0].Fields["pv"] != old.Name {
		t.Fatalf("want one \"Updated PV affinity\" line for %s, got %+v", old.Name, updated)
	}
	t.Logf("sidecar: %s", updated[0].Raw)
	if m := updated[0].Fields["method"]; m != method {
		t.Errorf("method %q with MutablePVNodeAffinity=%v, want %s", m, gate, method)
	}
	if gate {
		if repaired.UID != old.UID {
			t.Errorf("in-place repair replaced the PV object (UID %s, was %s)", repaired.UID, old.UID)
		}
		for _, p := range phases() {
			if !strings.HasPrefix(p, string(corev1.ClaimBound)+"(") {
				t.Errorf("claim went %s during an in-place repair; phases %v", p, phases())
			}
		}
	}
	waitEvent(ctx, t, b, "", "PersistentVolume", old.Name, eventUpdated)
	waitEvent(ctx, t, b, testbed.Namespace, "PersistentVolumeClaim", "data", eventUpdated)
	if n := repairs(ctx, t, b, map[string]string{"action": "replace", "result": "success"}); n != 1 {
		t.Errorf("repairs_total{action=replace,result=success} = %v, want 1", n)
	}
	assertNoVolumeDeleted(t, b)
	assertNoSavedState(t, b, rd, 1)
}

// watchClaimPhases records every phase a claim goes through from now on;
// the returned func lists them.
func watchClaimPhases(ctx context.Context, t *testing.T, b *testbed.Bed, name string) func() []string {
	t.Helper()
	w, err := b.Kube.CoreV1().PersistentVolumeClaims(testbed.Namespace).Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(),
	})
	must(t, err)
	t.Cleanup(w.Stop)
	var mu sync.Mutex
	var phases []string
	go func() {
		for ev := range w.ResultChan() {
			if pvc, ok := ev.Object.(*corev1.PersistentVolumeClaim); ok {
				mu.Lock()
				p := string(pvc.Status.Phase) + "(" + pvc.Spec.VolumeName + ")"
				if len(phases) == 0 || phases[len(phases)-1] != p {
					phases = append(phases, p)
				}
				mu.Unlock()
			}
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), phases...)
	}
}

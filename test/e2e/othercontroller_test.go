package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// Never two rewriters: a pod that looks like the operator's affinity
// controller (its labels, its image, Running) appears while PVs drift. The
// sidecar writes nothing while it runs, says so once in its log and with
// brake_holding{brake="other-controller"} 1, and repairs
// the PVs on its own once the pod is gone.
func TestNoRepairWhileAnotherAffinityControllerRuns(t *testing.T) {
	b := startBed(t, testbed.Options{})
	ctx := testContext(t, 6*time.Minute)
	createStorageClasses(ctx, t, b)
	old := provisionOne(ctx, t, b, testbed.Claim{Name: "data", StorageClass: "strict", Node: "n1"})

	// The operator's affinity controller, as far as the API server can tell:
	// no kubelet runs it here, so its status is set Running by hand.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "linstor-affinity-controller-7d9c", Namespace: testbed.ControllerNamespace, Labels: map[string]string{
			"app.kubernetes.io/component": "linstor-affinity-controller",
		}},
		Spec: corev1.PodSpec{NodeName: "n2", Containers: []corev1.Container{{
			Name: "linstor-affinity-controller", Image: "quay.io/piraeusdatastore/linstor-affinity-controller:v1.5.0",
		}}},
	}
	created, err := b.Kube.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	must(t, err)
	created.Status.Phase = corev1.PodRunning
	_, err = b.Kube.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	must(t, err)
	wctx, cancel := within(ctx)
	must(t, testbed.Poll(wctx, "brake other-controller holding", func(ctx context.Context) (bool, string) {
		m, err := b.Metrics(ctx)
		if err != nil {
			return false, err.Error()
		}
		v := m.Sum("linstor_affinity_sidecar_brake_holding", map[string]string{"brake": "other-controller"})
		return v == 1, fmt.Sprint(v)
	}))
	cancel()
	// The bed runs the sidecar as a host process without its pod's
	// namespace, so its warning goes to the log only (the Event on its pod
	// is covered by sidecar's TestOtherControllerHoldsNewRepairs).
	lines, err := b.SidecarLog("Another affinity controller is active; holding every new repair")
	must(t, err)
	if len(lines) != 1 || lines[0].Fields["other"] == "" {
		t.Fatalf("want one log line naming the other controller, got %+v", lines)
	}

	before := snapshotPVs(ctx, t, b, old.Name)
	must(t, b.Sim.MoveReplica(old.Spec.CSI.VolumeHandle, "n1", "n3"))
	wctx, cancel = within(ctx)
	must(t, b.WaitCycles(wctx, 3))
	cancel()
	assertUntouched(ctx, t, b, before)

	must(t, b.Kube.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}))
	wctx, cancel = within(ctx)
	defer cancel()
	if _, err := b.WaitPVAffinity(wctx, old.Name, testbed.Hosts("n3")...); err != nil {
		t.Fatalf("PV not repaired after the other controller left: %v", err)
	}
	m, err := b.Metrics(ctx)
	must(t, err)
	if v := m.Sum("linstor_affinity_sidecar_brake_holding", map[string]string{"brake": "other-controller"}); v != 0 {
		t.Errorf("brake_holding{other-controller} = %v after the other controller left, want 0", v)
	}
	assertNoVolumeDeleted(t, b)
}

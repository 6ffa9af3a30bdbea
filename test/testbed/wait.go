package testbed

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PollInterval is how often the waiting helpers look again.
const PollInterval = 100 * time.Millisecond

// Poll calls check until it reports done or ctx ends. check returns whether
// the outcome is there and, if not, a description of what it saw instead;
// the last description ends up in the error. Tests bound ctx generously
// (a minute or more) and assert the outcome, never the time it took.
func Poll(ctx context.Context, what string, check func(ctx context.Context) (done bool, state string)) error {
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	last := "nothing yet"
	for {
		// Each look gets its own deadline, so the last one before the
		// overall deadline still reports what it saw.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		done, state := check(cctx)
		cancel()
		if done {
			return nil
		}
		last = state
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w; last seen: %s", what, ctx.Err(), last)
		case <-t.C:
		}
	}
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

// WaitPVAffinity waits until PV name exists with exactly the node affinity
// of the given segments (no affinity at all for none) and returns it.
func (b *Bed) WaitPVAffinity(ctx context.Context, name string, want ...Segment) (*corev1.PersistentVolume, error) {
	return b.waitPV(ctx, name, "with affinity "+DescribeSegments(want), func(pv *corev1.PersistentVolume) (bool, string) {
		return AffinityEquals(pv.Spec.NodeAffinity, want), "affinity " + DescribeAffinity(pv.Spec.NodeAffinity)
	})
}

// WaitPVBound waits until PV name exists, not being deleted, in phase Bound
// and returns it. A recreated PV starts out Pending until the PV binder of
// kube-controller-manager binds it to its claim again.
func (b *Bed) WaitPVBound(ctx context.Context, name string) (*corev1.PersistentVolume, error) {
	return b.waitPV(ctx, name, "Bound", func(pv *corev1.PersistentVolume) (bool, string) {
		return pv.Status.Phase == corev1.VolumeBound, fmt.Sprintf("phase %s", pv.Status.Phase)
	})
}

// waitPV polls PV name until it exists, is not being deleted and done says
// so; it returns the last copy seen.
func (b *Bed) waitPV(ctx context.Context, name, what string, done func(*corev1.PersistentVolume) (bool, string)) (*corev1.PersistentVolume, error) {
	var got *corev1.PersistentVolume
	err := Poll(ctx, "PV "+name+" "+what, func(ctx context.Context) (bool, string) {
		pv, err := b.Kube.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if pv.DeletionTimestamp != nil {
			return false, "being deleted"
		}
		got = pv
		return done(pv)
	})
	return got, err
}

// WaitClaimBound waits until the claim is Bound, to pvName when not empty,
// and returns it.
func (b *Bed) WaitClaimBound(ctx context.Context, claim, pvName string) (*corev1.PersistentVolumeClaim, error) {
	var got *corev1.PersistentVolumeClaim
	what := "claim " + claim + " Bound"
	if pvName != "" {
		what += " to PV " + pvName
	}
	err := Poll(ctx, what, func(ctx context.Context) (bool, string) {
		pvc, err := b.Kube.CoreV1().PersistentVolumeClaims(Namespace).Get(ctx, claim, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		got = pvc
		bound := pvc.Status.Phase == corev1.ClaimBound && pvc.Spec.VolumeName != "" &&
			(pvName == "" || pvc.Spec.VolumeName == pvName)
		return bound, fmt.Sprintf("phase %s, volume %q", pvc.Status.Phase, pvc.Spec.VolumeName)
	})
	return got, err
}

// WaitPodScheduled waits until kube-scheduler bound the pod to a node and
// returns the node's name.
func (b *Bed) WaitPodScheduled(ctx context.Context, name string) (string, error) {
	var node string
	err := Poll(ctx, "pod "+name+" scheduled", func(ctx context.Context) (bool, string) {
		pod, err := b.Kube.CoreV1().Pods(Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		node = pod.Spec.NodeName
		return node != "", podSchedulingState(pod)
	})
	return node, err
}

// VolumeAffinityConflict is how kube-scheduler v1.36 says no node matches
// a pod's PV node affinity ("3 node(s) didn't match PersistentVolume's node
// affinity"; older releases said "volume node affinity conflict").
const VolumeAffinityConflict = "didn't match PersistentVolume's node affinity"

// WaitPodUnschedulable waits until the scheduler reported the pod
// unschedulable with a message containing reason, and fails at once if the
// pod got a node instead.
func (b *Bed) WaitPodUnschedulable(ctx context.Context, name, reason string) error {
	scheduled := ""
	err := Poll(ctx, "pod "+name+" unschedulable ("+reason+")", func(ctx context.Context) (bool, string) {
		pod, err := b.Kube.CoreV1().Pods(Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if pod.Spec.NodeName != "" {
			scheduled = pod.Spec.NodeName
			return true, ""
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && strings.Contains(c.Message, reason) {
				return true, ""
			}
		}
		return false, podSchedulingState(pod)
	})
	if err == nil && scheduled != "" {
		return fmt.Errorf("pod %s was scheduled onto %s, want it unschedulable (%s)", name, scheduled, reason)
	}
	return err
}

func podSchedulingState(pod *corev1.Pod) string {
	if pod.Spec.NodeName != "" {
		return "scheduled on " + pod.Spec.NodeName
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			return fmt.Sprintf("PodScheduled=%s %s: %s", c.Status, c.Reason, c.Message)
		}
	}
	return "no scheduling decision yet"
}

// WaitSidecarReady waits until the sidecar answers /readyz with 200 and,
// with leader election, leads; it fails at once when the process exits.
func (b *Bed) WaitSidecarReady(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	get := func(ctx context.Context, path string) (int, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.SidecarURL()+path, nil)
		if err != nil {
			return 0, err.Error()
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		_ = resp.Body.Close()
		return resp.StatusCode, resp.Status
	}
	exited := false
	err := Poll(ctx, "sidecar ready", func(ctx context.Context) (bool, string) {
		if b.Sidecar.Exited() {
			exited = true
			return true, ""
		}
		if code, state := get(ctx, "/readyz"); code != http.StatusOK {
			return false, "/readyz: " + state
		}
		m, err := b.Metrics(ctx)
		if err != nil {
			return false, err.Error()
		}
		leader := m.Sum("linstor_affinity_sidecar_leader", nil)
		return leader == 1, fmt.Sprintf("ready, leader gauge %v", leader)
	})
	if exited {
		return fmt.Errorf("sidecar exited (%v); log %s ends with:\n%s", b.Sidecar.ExitErr(), b.Sidecar.LogPath(), b.Sidecar.LogTail(3000))
	}
	return err
}

// WaitCycles waits until the sidecar completed n more successful reconcile
// cycles than when called, so whatever it would do about the current state
// it has done.
func (b *Bed) WaitCycles(ctx context.Context, n int) error {
	m, err := b.Metrics(ctx)
	if err != nil {
		return err
	}
	start := m.Sum("linstor_affinity_sidecar_reconciles_total", map[string]string{"result": "success"})
	return Poll(ctx, fmt.Sprintf("%d more successful reconcile cycles", n), func(ctx context.Context) (bool, string) {
		m, err := b.Metrics(ctx)
		if err != nil {
			return false, err.Error()
		}
		now := m.Sum("linstor_affinity_sidecar_reconciles_total", map[string]string{"result": "success"})
		return now >= start+float64(n), fmt.Sprintf("%v successful cycles since", now-start)
	})
}

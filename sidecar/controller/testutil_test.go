package controller

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/kubecache"
)

// planned is what the loop would carry out on view: plan's actions, the
// pvs metric updated and skips logged as in a cycle.
func planned(r *Reconciler, view *decide.View) ([]decide.Action, error) {
	actions, _, _, err := r.plan(view)
	return actions, err
}

// compact is what the PV cache holds for pv (kubecache.Compact).
func compact(t testing.TB, pv *corev1.PersistentVolume) *corev1.PersistentVolume {
	t.Helper()
	c, err := kubecache.Compact(pv)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

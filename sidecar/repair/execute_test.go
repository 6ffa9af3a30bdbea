package repair

import (
	"testing"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRestorePatchOnlyUndoesTheRetainStep: the reclaim policy is set back
// only when the live PV carries the retain step's skip-reclaim mark.
func TestRestorePatchOnlyUndoesTheRetainStep(t *testing.T) {
	e := &Executor{DriverName: fixture.Driver}
	key := e.SkipReclaimAnnotation()
	pv := func(policy corev1.PersistentVolumeReclaimPolicy, mark string) *corev1.PersistentVolume {
		p := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv", UID: "u", ResourceVersion: "9"}}
		p.Spec.PersistentVolumeReclaimPolicy = policy
		if mark != "" {
			p.Annotations = map[string]string{key: mark}
		}
		return p
	}
	del, ret := corev1.PersistentVolumeReclaimDelete, corev1.PersistentVolumeReclaimRetain
	for _, tc := range []struct {
		name        string
		saved, live *corev1.PersistentVolume
		wantPolicy  any // nil: the patch leaves the policy alone
		wantMark    bool
	}{
		{"retain step ran", pv(del, ""), pv(ret, "true"), del, true},
		{"user set Retain, no mark", pv(del, ""), pv(ret, ""), nil, false},
		{"user set Delete after the retain step", pv(del, ""), pv(del, "true"), nil, true},
		{"mark was there before the replace", pv(del, "true"), pv(ret, "true"), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			patch := e.restorePatch(tc.saved, tc.live)
			var gotPolicy any
			gotMark := false
			if patch != nil {
				if spec, ok := patch["spec"].(map[string]any); ok {
					gotPolicy = spec["persistentVolumeReclaimPolicy"]
				}
				meta := patch["metadata"].(map[string]any)
				_, gotMark = meta["annotations"]
			}
			if gotPolicy != tc.wantPolicy {
				t.Errorf("policy in patch %v, want %v (patch %v)", gotPolicy, tc.wantPolicy, patch)
			}
			if gotMark != tc.wantMark {
				t.Errorf("annotation in patch %v, want %v (patch %v)", gotMark, tc.wantMark, patch)
			}
		})
	}
}

package controller

import (
	"context"
	"strings"
	"testing"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fakebed"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/repair"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"
)

// richLivePV turns the bed's PV into one with every field a replace must
// keep (fullPV's), strict by its override annotation, and stores it.
func richLivePV(b *fakebed.Bed, pv *corev1.PersistentVolume) *corev1.PersistentVolume {
	b.T.Helper()
	rich := fixture.FullPV()
	rich.Name, rich.UID, rich.ResourceVersion = pv.Name, pv.UID, "8"
	rich.Spec.CSI.VolumeHandle = pv.Spec.CSI.VolumeHandle
	rich.Spec.NodeAffinity = pv.Spec.NodeAffinity
	rich.Annotations["override.piraeus.io/n1"] = "false"
	rich.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimDelete
	stored, err := b.Kube.CoreV1().PersistentVolumes().Update(context.Background(), rich, metav1.UpdateOptions{})
	b.Must(err)
	return stored
}

// A replace decided on a compact copy creates, and saves in LINSTOR, a
// replacement with every field of the live PV: labels, annotations,
// finalizers, owner references, capacity, access and volume modes, mount
// options, all CSI attributes and secret references, the claimRef.
func TestReplaceBuildsTheReplacementFromTheLivePV(t *testing.T) {
	b := fakebed.New(t)
	live := richLivePV(b, b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})[0])
	var saved string
	r, _ := newReconciler(b, func(s repair.Step, pv string) error {
		if s == repair.StepSaveState {
			raw, err := b.Linstor.LoadState(context.Background(), decide.VolumeRef{RD: "vol-a"}, false)
			b.Must(err)
			saved = raw
		}
		return nil
	})
	compact := compact(t, live)
	if compact.Spec.Capacity != nil || compact.Spec.MountOptions != nil || len(compact.Spec.CSI.VolumeAttributes) != 2 {
		t.Fatalf("test premise: the cached copy is compact, got %+v", compact.Spec)
	}
	withCache(t, r, live)
	if err := r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := decide.Replacement(live, fixture.AffinityOf(fixture.Host("n2")))
	created, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), live.Name, metav1.GetOptions{})
	b.Must(err)
	fromSaved, err := decide.DecodeSavedPV(saved)
	if err != nil {
		t.Fatalf("saved state: %v", err)
	}
	for what, got := range map[string]*corev1.PersistentVolume{"created PV": created, "saved state": fromSaved} {
		for field, pair := range map[string][2]any{
			"labels":          {got.Labels, want.Labels},
			"annotations":     {got.Annotations, want.Annotations},
			"finalizers":      {got.Finalizers, want.Finalizers},
			"ownerReferences": {got.OwnerReferences, want.OwnerReferences},
			"spec":            {got.Spec, want.Spec},
		} {
			if !equality.Semantic.DeepEqual(pair[0], pair[1]) {
				t.Errorf("%s: %s = %+v\nwant %+v (the live PV's)", what, field, pair[0], pair[1])
			}
		}
	}
}

// A PV that changed between the decision and the replace (the cache had not
// shown the change yet) is not replaced, not put in backoff, and counts as
// no failure; the next cycle, on the new copy, repairs it.
func TestPVChangedSinceTheDecisionIsNotReplacedNorBackedOff(t *testing.T) {
	for _, method := range []repair.RepairMethod{repair.MethodRecreate, repair.MethodInPlace} {
		t.Run(string(method), func(t *testing.T) {
			b := fakebed.New(t)
			decided := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})[0]
			r, _ := newReconciler(b, nil)
			r.exec.Method = method
			edited := decided.DeepCopy()
			edited.ResourceVersion = "8"
			edited.Labels["edited"] = "yes"
			_, err := b.Kube.CoreV1().PersistentVolumes().Update(context.Background(), edited, metav1.UpdateOptions{})
			b.Must(err)
			if method == repair.MethodInPlace {
				// The fake API server does not check the patch's
				// resourceVersion; the real one answers 409.
				b.Kube.PrependReactor("patch", "persistentvolumes", func(a k8stesting.Action) (bool, runtime.Object, error) {
					if strings.Contains(string(a.(k8stesting.PatchActionImpl).GetPatch()), `"resourceVersion":"7"`) {
						return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "persistentvolumes"}, decided.Name, nil)
					}
					return false, nil, nil
				})
			}

			if err := r.Cycle(context.Background()); err != nil {
				t.Fatalf("a PV that changed since the decision failed the cycle: %v", err)
			}
			after, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), decided.Name, metav1.GetOptions{})
			b.Must(err)
			if after.UID != decided.UID || after.Labels["edited"] != "yes" || decide.DescribeAffinity(after.Spec.NodeAffinity) != "[{linbit.com/hostname=n1}]" {
				t.Fatalf("the changed PV was written to: %+v", after)
			}
			if len(b.SavedStates()) != 0 || len(b.DryRuns) != 0 {
				t.Errorf("the replace went on after the live read: saved state %v, dry runs %v", b.SavedStates(), b.DryRuns)
			}
			if n := r.backoff.failures(decided.Name); n != 0 || len(r.backoff.delays()) != 0 {
				t.Errorf("PV put in backoff (%d failures, %v)", n, r.backoff.delays())
			}
			if v := testutil.ToFloat64(r.metrics.Repairs.WithLabelValues(string(decide.KindReplace), "", "error")); v != 0 {
				t.Errorf("repairs_total{error} = %v, want 0", v)
			}
			for _, e := range drainRecorder(r) {
				t.Errorf("Event for a repair not made: %s", e)
			}

			withCache(t, r, after) // the informer shows the edit
			if err := r.Cycle(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := b.AffinityOf(decided.Name); got != "[{linbit.com/hostname=n2}]" {
				t.Errorf("not repaired on the new copy: %s", got)
			}
		})
	}
}

package controller

import (
	"context"
	"testing"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fakebed"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/repair"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	k8stesting "k8s.io/client-go/testing"
)

// apiServerGate makes the fake clientset behave like an API server with the
// MutablePVNodeAffinity gate on or off: merge patches that change
// spec.nodeAffinity are refused as invalid when off; dry runs never apply.
type apiServerGate struct {
	on      bool
	dryRuns int
}

func (g *apiServerGate) install(b *fakebed.Bed) {
	b.Kube.PrependReactor("patch", "persistentvolumes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchActionImpl)
		if string(p.GetPatchType()) != "application/merge-patch+json" || !containsWord(string(p.GetPatch()), "nodeAffinity") {
			return false, nil, nil
		}
		if !g.on {
			return true, nil, apierrors.NewInvalid(schema.GroupKind{Kind: "PersistentVolume"}, p.GetName(),
				field.ErrorList{field.Forbidden(field.NewPath("spec", "nodeAffinity"), "field is immutable")})
		}
		if len(p.PatchOptions.DryRun) > 0 {
			g.dryRuns++
			obj, err := b.Kube.Tracker().Get(p.GetResource(), "", p.GetName())
			return true, obj, err
		}
		return false, nil, nil
	})
}

func TestAutoRepairsInPlaceWhenTheAPIServerAllowsIt(t *testing.T) {
	b := fakebed.New(t)
	gate := &apiServerGate{on: true}
	gate.install(b)
	pvs := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	more := b.AddVolume("vol-b", 1, []string{"n3"}, []string{"n1"})
	r, _ := newReconciler(b, nil)
	r.exec.Method = repair.MethodAuto
	if err := r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, before := range []*corev1.PersistentVolume{pvs[0], more[0]} {
		after, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), before.Name, metav1.GetOptions{})
		b.Must(err)
		if after.UID != before.UID {
			t.Errorf("pv %s recreated (UID %s -> %s), want an in-place update", before.Name, before.UID, after.UID)
		}
	}
	b.AssertHealed(pvs[0], []string{"n2"})
	b.AssertHealed(more[0], []string{"n3"})
	if gate.dryRuns != 1 {
		t.Errorf("%d dry runs, want 1: the answer is cached", gate.dryRuns)
	}
	if n := testutil.ToFloat64(r.metrics.Repairs.WithLabelValues(string(decide.KindReplace), string(repair.MethodInPlace), "success")); n != 2 {
		t.Errorf("in-place repairs = %v, want 2", n)
	}
}

func TestAutoFallsBackToRecreateWhenAffinityIsImmutable(t *testing.T) {
	b := fakebed.New(t)
	(&apiServerGate{on: false}).install(b)
	pvs := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	r, _ := newReconciler(b, nil)
	r.exec.Method = repair.MethodAuto
	if err := r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	after, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{})
	b.Must(err)
	if after.UID == pvs[0].UID {
		t.Error("PV kept its UID although in-place updates are refused: it was not recreated")
	}
	b.AssertHealed(pvs[0], []string{"n2"})
	if n := testutil.ToFloat64(r.metrics.Repairs.WithLabelValues(string(decide.KindReplace), string(repair.MethodRecreate), "success")); n != 1 {
		t.Errorf("recreate repairs = %v, want 1", n)
	}
}

func TestForcedInPlaceNeverRecreates(t *testing.T) {
	b := fakebed.New(t)
	(&apiServerGate{on: false}).install(b)
	pvs := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	r, _ := newReconciler(b, nil)
	r.exec.Method = repair.MethodInPlace
	if err := r.Cycle(context.Background()); err == nil {
		t.Fatal("cycle succeeded although the API server refuses in-place updates")
	}
	after, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{})
	b.Must(err)
	if after.UID != pvs[0].UID || decide.DescribeAffinity(after.Spec.NodeAffinity) != "[{linbit.com/hostname=n1}]" {
		t.Errorf("PV changed: UID %s affinity %s", after.UID, decide.DescribeAffinity(after.Spec.NodeAffinity))
	}
	if len(b.SavedStates()) != 0 {
		t.Error("saved state written by an in-place repair")
	}
}

package controller

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fakebed"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/linstor"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/repair"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// reconciler builds a fresh reconciler over the current API state, as a
// restarted sidecar would have: the informer cache is a snapshot of the fake,
// its PVs compact as the sidecar's own cache holds them.
func newReconciler(b *fakebed.Bed, hook func(repair.Step, string) error) (*Reconciler, *record.FakeRecorder) {
	b.T.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	list, err := b.Kube.CoreV1().PersistentVolumes().List(context.Background(), metav1.ListOptions{})
	b.Must(err)
	for i := range list.Items {
		b.Must(idx.Add(compact(b.T, &list.Items[i])))
	}
	scIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	rec := record.NewFakeRecorder(1000)
	exec := &repair.Executor{Kube: b.Kube, State: b.Linstor, DriverName: fixture.Driver, Timeout: 5 * time.Second, PollInterval: time.Millisecond, AfterStep: hook}
	r := NewReconciler(Options{
		Config:  decide.Config{DriverName: fixture.Driver, GracePeriod: time.Minute, DefaultPolicy: decide.PolicyAnywhere},
		Workers: 4, Timeout: 5 * time.Second, Replicas: b.Linstor,
	}, corelisters.NewPersistentVolumeLister(idx), storagelisters.NewStorageClassLister(scIdx), b.Linstor, nil, exec, rec, NewMetrics())
	return r, rec
}

// converge runs fresh reconcilers until a cycle changes nothing, at most n.
func converge(b *fakebed.Bed, n int) {
	b.T.Helper()
	for i := 0; i < n; i++ {
		r, _ := newReconciler(b, nil)
		v, err := b.Linstor.Fetch(context.Background())
		b.Must(err)
		actions, err := planned(r, v)
		b.Must(err)
		if len(actions) == 0 {
			return
		}
		if failed := r.execute(context.Background(), actions); failed > 0 {
			b.T.Fatalf("cycle %d: %d actions failed", i, failed)
		}
	}
	b.T.Fatalf("no convergence after %d cycles", n)
}

func TestReplaceRewritesDriftedPVKeepingEverythingElse(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-a", 1, []string{"n2", "n3"}, []string{"n1", "n2"})
	r, rec := newReconciler(b, nil)
	if err := r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.AssertHealed(pvs[0], []string{"n2", "n3"})
	var events []string
	for len(rec.Events) > 0 {
		events = append(events, <-rec.Events)
	}
	if len(events) != 2 {
		t.Fatalf("want VolumeAffinityUpdated on PV and PVC, got %q", events)
	}
	for _, e := range events {
		if !containsWord(e, EventAffinityUpdated) {
			t.Errorf("unexpected event %q", e)
		}
	}
	// A second cycle over the repaired state changes nothing.
	r2, _ := newReconciler(b, nil)
	v, err := b.Linstor.Fetch(context.Background())
	b.Must(err)
	if actions, _ := planned(r2, v); len(actions) != 0 {
		t.Fatalf("repaired PV decided again: %+v", actions[0])
	}
}

func containsWord(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if s[i:i+len(w)] == w {
			return true
		}
	}
	return false
}

// TestInterruptedReplaceConverges stops the replace after each step, as a
// crash would, then lets restarted sidecars finish: every time the PV is back,
// bound to the same claim, with its reclaim policy, and the volume untouched.
func TestInterruptedReplaceConverges(t *testing.T) {
	steps := []repair.Step{repair.StepSaveState, repair.StepRetain, repair.StepDelete, repair.StepCreate, repair.StepClearState}
	for _, step := range steps {
		t.Run(string(step), func(t *testing.T) {
			b := fakebed.New(t)
			pvs := b.AddVolume("vol-b", 2, []string{"n3", "n4"}, []string{"n1"})
			other := b.AddVolume("vol-c", 1, []string{"n2"}, []string{"n1"})
			crashed := false
			r, _ := newReconciler(b, func(s repair.Step, pv string) error {
				if s == step && pv == pvs[1].Name {
					crashed = true
					return repair.ErrInterrupted
				}
				return nil
			})
			err := r.Cycle(context.Background())
			if !crashed {
				t.Fatalf("step %s never reached", step)
			}
			if err == nil && step != repair.StepClearState {
				t.Fatalf("interrupted cycle reported success")
			}
			converge(b, 4)
			b.AssertHealed(pvs[0], []string{"n3", "n4"})
			b.AssertHealed(pvs[1], []string{"n3", "n4"})
			b.AssertHealed(other[0], []string{"n2"})
		})
	}
}

// TestReplaceStuckTerminatingFinishes covers a crash after the delete when the
// API server keeps the PV terminating behind finalizers: the restarted sidecar
// strips them and recreates.
func TestReplaceStuckTerminatingFinishes(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-d", 1, []string{"n4"}, []string{"n1"})
	r, _ := newReconciler(b, func(s repair.Step, pv string) error {
		if s == repair.StepRetain {
			return repair.ErrInterrupted
		}
		return nil
	})
	_ = r.Cycle(context.Background())
	// Emulate a real API server: the PV is terminating, held by finalizers.
	pv, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{})
	b.Must(err)
	now := metav1.Now()
	pv.DeletionTimestamp = &now
	_, err = b.Kube.CoreV1().PersistentVolumes().Update(context.Background(), pv, metav1.UpdateOptions{})
	b.Must(err)
	// Like the API server, drop the object once its finalizers are removed.
	b.Kube.PrependReactor("patch", "persistentvolumes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchAction)
		if p.GetPatchType() != types.JSONPatchType || p.GetName() != pv.Name {
			return false, nil, nil
		}
		gvr := corev1.SchemeGroupVersion.WithResource("persistentvolumes")
		current, err := b.Kube.Tracker().Get(gvr, "", pv.Name)
		if err != nil {
			return true, nil, err
		}
		if current.(*corev1.PersistentVolume).DeletionTimestamp == nil {
			return false, nil, nil
		}
		return true, current, b.Kube.Tracker().Delete(gvr, "", pv.Name)
	})
	converge(b, 4)
	b.AssertHealed(pvs[0], []string{"n4"})
}

// TestSavedStateOnLegacyLocationIsFinished: the upstream controller's older
// versions left the replacement on the resource definition; the PV is gone.
func TestSavedStateOnLegacyLocationIsFinished(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-e", 1, []string{"n2"}, []string{"n1"})
	repl := decide.Replacement(pvs[0], decide.AffinityFor(decide.Topology{Segments: fakebed.HostSegments([]string{"n2"})}))
	raw, err := decide.EncodeSavedPV(repl)
	b.Must(err)
	b.Must(b.Kube.CoreV1().PersistentVolumes().Delete(context.Background(), pvs[0].Name, metav1.DeleteOptions{}))
	store := &memStore{Linstor: b.Linstor, legacy: map[string]string{"vol-e": raw}}
	v, err := b.Linstor.Fetch(context.Background())
	b.Must(err)
	v.RDs["vol-e"].LegacySaved = raw
	r, _ := newReconciler(b, nil)
	r.exec.State = store
	actions, err := planned(r, v)
	b.Must(err)
	if len(actions) != 1 || actions[0].Kind != decide.KindRecreate || !actions[0].Saved.Legacy {
		t.Fatalf("want one recreate from legacy state, got %+v", actions)
	}
	if failed := r.execute(context.Background(), actions); failed != 0 {
		t.Fatal("recreate failed")
	}
	if _, ok := store.legacy["vol-e"]; ok {
		t.Error("legacy saved state not cleared")
	}
	b.AssertHealed(pvs[0], []string{"n2"})
}

// memStore stands in for LINSTOR's resource-definition properties, which
// fakelinstor cannot modify, and defers volume definitions to fakelinstor.
type memStore struct {
	*linstor.Linstor
	legacy map[string]string
}

func (m *memStore) LoadState(ctx context.Context, ref decide.VolumeRef, legacy bool) (string, error) {
	if legacy {
		return m.legacy[ref.RD], nil
	}
	return m.Linstor.LoadState(ctx, ref, legacy)
}

func (m *memStore) ClearState(ctx context.Context, s *decide.SavedState) error {
	if s.Legacy {
		delete(m.legacy, s.Ref.RD)
		return nil
	}
	return m.Linstor.ClearState(ctx, s)
}

// TestFailedWriteLeavesPVAndRetries: the API server refuses the delete; the
// PV stays, and the next cycle undoes the preparation and tries again.
func TestFailedWriteLeavesPVAndRetries(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-f", 1, []string{"n3"}, []string{"n1"})
	b.Kube.PrependReactor("delete", "persistentvolumes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if fakebed.IsDryRun(a) {
			return false, nil, nil
		}
		return true, nil, errors.New("etcd unavailable")
	})
	r, _ := newReconciler(b, nil)
	if err := r.Cycle(context.Background()); err == nil {
		t.Fatal("cycle with a failed delete reported success")
	}
	if _, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("PV gone after a failed delete: %v", err)
	}
	b.Kube.ReactionChain = b.Kube.ReactionChain[1:]
	converge(b, 4)
	b.AssertHealed(pvs[0], []string{"n3"})
}

// TestDeleteRetriesWhenAnotherControllerTouchedTheRetainedPV: right after the
// Retain patch the external-provisioner drops its finalizer, which changes the
// resourceVersion; the replace must not give up on that.
func TestDeleteRetriesWhenAnotherControllerTouchedTheRetainedPV(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-g", 1, []string{"n3"}, []string{"n1"})
	conflicts := 0
	b.Kube.PrependReactor("delete", "persistentvolumes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if fakebed.IsDryRun(a) {
			return false, nil, nil
		}
		if conflicts < 2 {
			conflicts++
			return true, nil, apierrors.NewConflict(corev1.Resource("persistentvolumes"), pvs[0].Name, errors.New("the ResourceVersion in the precondition does not match"))
		}
		return false, nil, nil
	})
	r, _ := newReconciler(b, nil)
	if err := r.Cycle(context.Background()); err != nil {
		t.Fatalf("replace gave up after a resourceVersion conflict: %v", err)
	}
	if conflicts != 2 {
		t.Fatalf("%d conflicts served", conflicts)
	}
	b.AssertHealed(pvs[0], []string{"n3"})
}

// TestDeleteRefusedWhenRetainWasUndone: if the reclaim policy went back to
// Delete between the Retain patch and the delete, the PV must not be deleted.
func TestDeleteRefusedWhenRetainWasUndone(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-h", 1, []string{"n3"}, []string{"n1"})
	undone := false
	b.Kube.PrependReactor("delete", "persistentvolumes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if fakebed.IsDryRun(a) {
			return false, nil, nil
		}
		if !undone {
			undone = true
			pv, err := b.Kube.Tracker().Get(corev1.SchemeGroupVersion.WithResource("persistentvolumes"), "", pvs[0].Name)
			b.Must(err)
			changed := pv.(*corev1.PersistentVolume).DeepCopy()
			changed.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimDelete
			b.Must(b.Kube.Tracker().Update(corev1.SchemeGroupVersion.WithResource("persistentvolumes"), changed, ""))
			return true, nil, apierrors.NewConflict(corev1.Resource("persistentvolumes"), pvs[0].Name, errors.New("modified"))
		}
		return false, nil, nil
	})
	r, _ := newReconciler(b, nil)
	if err := r.Cycle(context.Background()); err == nil {
		t.Fatal("replace went ahead although the PV's reclaim policy was set back to Delete")
	}
	pv, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{})
	if err != nil || pv.UID != pvs[0].UID {
		t.Fatalf("PV deleted: %v", err)
	}
}

// TestInterruptedReplaceKeepsReclaimPolicyUserSet: a replace stopped after
// saving its state, before its retain step; meanwhile a user sets the PV to
// Retain. Finishing the interrupted replace must not set the policy back to
// the Delete recorded in the saved state: the next replace carries Retain.
func TestInterruptedReplaceKeepsReclaimPolicyUserSet(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-i", 1, []string{"n3"}, []string{"n1"})
	r, _ := newReconciler(b, func(s repair.Step, _ string) error {
		if s == repair.StepSaveState {
			return repair.ErrInterrupted
		}
		return nil
	})
	if err := r.Cycle(context.Background()); err == nil {
		t.Fatal("interrupted cycle reported success")
	}
	if b.SavedStates()[pvs[0].Name] == nil {
		t.Fatal("no saved state after the save-state step")
	}
	pv, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{})
	b.Must(err)
	pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
	_, err = b.Kube.CoreV1().PersistentVolumes().Update(context.Background(), pv, metav1.UpdateOptions{})
	b.Must(err)

	converge(b, 4)
	want := pvs[0].DeepCopy()
	want.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
	b.AssertHealed(want, []string{"n3"})
}

// TestDeleteRefusedWhenPVWasEditedAfterRetain: a user labels the PV between
// the Retain patch and the delete. The replacement was built without the
// label, so the old PV must not be deleted; the next cycles undo the retain
// and replace the PV as edited, label included.
func TestDeleteRefusedWhenPVWasEditedAfterRetain(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-j", 1, []string{"n3"}, []string{"n1"})
	edited := false
	b.Kube.PrependReactor("delete", "persistentvolumes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if fakebed.IsDryRun(a) {
			return false, nil, nil
		}
		if !edited {
			edited = true
			pv, err := b.Kube.Tracker().Get(corev1.SchemeGroupVersion.WithResource("persistentvolumes"), "", pvs[0].Name)
			b.Must(err)
			changed := pv.(*corev1.PersistentVolume).DeepCopy()
			changed.Labels["team"] = "billing"
			changed.ResourceVersion = "8"
			b.Must(b.Kube.Tracker().Update(corev1.SchemeGroupVersion.WithResource("persistentvolumes"), changed, ""))
			return true, nil, apierrors.NewConflict(corev1.Resource("persistentvolumes"), pvs[0].Name, errors.New("modified"))
		}
		return false, nil, nil
	})
	r, _ := newReconciler(b, nil)
	if err := r.Cycle(context.Background()); err == nil {
		t.Fatal("replace deleted a PV edited after its retain step")
	}
	pv, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{})
	if err != nil || pv.UID != pvs[0].UID {
		t.Fatalf("PV deleted: %v", err)
	}
	converge(b, 4)
	b.AssertHealed(pvs[0], []string{"n3"})
	pv, err = b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{})
	b.Must(err)
	if pv.Labels["team"] != "billing" {
		t.Errorf("the user's label was lost in the replace: labels %v", pv.Labels)
	}
}

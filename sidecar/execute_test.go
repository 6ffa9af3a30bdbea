package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	lapi "github.com/LINBIT/golinstor/client"
	"github.com/LINBIT/golinstor/fakelinstor"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

const exDriver = "linstor.csi.linbit.com"

// exBed is a fake cluster (client-go fake clientset) and a fake LINSTOR
// (golinstor's fakelinstor, or the simulator: newSimBed) holding PVs whose
// replicas moved.
type exBed struct {
	t       *testing.T
	kube    *fake.Clientset
	fl      *fakelinstor.FakeLinstor
	url     string // LINSTOR's base URL
	lc      *lapi.Client
	linstor *Linstor
	// deny plays an admission policy for dry runs ("create", "delete").
	deny    func(verb string, pv *corev1.PersistentVolume) error
	dryRuns []string
}

func newExBed(t *testing.T) *exBed {
	t.Helper()
	fl := fakelinstor.New()
	t.Cleanup(fl.Server.Close)
	u, err := url.Parse(fl.Server.URL)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := lapi.NewClient(lapi.BaseURL(u), lapi.Log(quietLog{}))
	if err != nil {
		t.Fatal(err)
	}
	b := newBedOn(t, fl.Server.URL, lc)
	b.fl = fl
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		b.must(lc.Nodes.Create(context.Background(), lapi.Node{Name: n, Type: "SATELLITE", Props: map[string]string{
			NamespaceTopology + "/" + HostnameKey:              n,
			NamespaceTopology + "/topology.kubernetes.io/zone": "z-" + n,
		}}))
	}
	return b
}

// newBedOn is an exBed on the LINSTOR at url that lc speaks to.
func newBedOn(t *testing.T, url string, lc *lapi.Client) *exBed {
	b := &exBed{t: t, kube: fake.NewClientset(), url: url, lc: lc, linstor: NewLinstor(lc, NamespaceTopology)}
	b.kube.PrependReactor("*", "persistentvolumes", b.dryRun)
	return b
}

// dryRun answers server-side dry runs of PV creates and deletes as the API
// server does (validate, apply nothing), which the fake clientset's tracker
// would otherwise carry out. deny, when set, plays an admission policy.
func (b *exBed) dryRun(a k8stesting.Action) (bool, runtime.Object, error) {
	switch act := a.(type) {
	case k8stesting.CreateActionImpl:
		if len(act.CreateOptions.DryRun) == 0 {
			return false, nil, nil
		}
		b.dryRuns = append(b.dryRuns, "create")
		pv := act.GetObject().(*corev1.PersistentVolume)
		if pv.Name == "" && pv.GenerateName == "" {
			return true, nil, apierrors.NewInvalid(schema.GroupKind{Kind: "PersistentVolume"}, "", nil)
		}
		if b.deny != nil {
			if err := b.deny("create", pv); err != nil {
				return true, nil, err
			}
		}
		return true, pv, nil
	case k8stesting.DeleteActionImpl:
		if len(act.DeleteOptions.DryRun) == 0 {
			return false, nil, nil
		}
		b.dryRuns = append(b.dryRuns, "delete")
		obj, err := b.kube.Tracker().Get(act.GetResource(), "", act.GetName())
		if err != nil {
			return true, nil, err
		}
		if b.deny != nil {
			if err := b.deny("delete", obj.(*corev1.PersistentVolume)); err != nil {
				return true, nil, err
			}
		}
		return true, nil, nil
	}
	return false, nil, nil
}

// isDryRun reports whether a is a server-side dry run (see exBed.dryRun).
func isDryRun(a k8stesting.Action) bool {
	switch act := a.(type) {
	case k8stesting.CreateActionImpl:
		return len(act.CreateOptions.DryRun) > 0
	case k8stesting.DeleteActionImpl:
		return len(act.DeleteOptions.DryRun) > 0
	}
	return false
}

func (b *exBed) must(err error) {
	b.t.Helper()
	if err != nil {
		b.t.Fatal(err)
	}
}

// addVolume creates an RD with nVols volume definitions, diskful on nodes, and
// one PV per volume with strict affinity to oldNodes and a bound claim.
func (b *exBed) addVolume(rd string, nVols int, nodes, oldNodes []string) []*corev1.PersistentVolume {
	ctx := context.Background()
	b.must(b.lc.ResourceDefinitions.Create(ctx, lapi.ResourceDefinitionCreate{ResourceDefinition: lapi.ResourceDefinition{Name: rd}}))
	for v := 0; v < nVols; v++ {
		nr := int32(v)
		b.must(b.lc.ResourceDefinitions.CreateVolumeDefinition(ctx, rd, lapi.VolumeDefinitionCreate{
			VolumeDefinition: lapi.VolumeDefinition{VolumeNumber: &nr, SizeKib: 1024},
		}))
	}
	for _, n := range nodes {
		b.must(b.lc.Resources.Create(ctx, lapi.ResourceCreate{Resource: lapi.Resource{Name: rd, NodeName: n}}))
	}
	var pvs []*corev1.PersistentVolume
	for v := 0; v < nVols; v++ {
		handle := rd
		if v > 0 {
			handle = fmt.Sprintf("%s/%d", rd, v)
		}
		name := fmt.Sprintf("pv-%s-%d", rd, v)
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{
				Name: name, UID: types.UID("old-" + name), ResourceVersion: "7",
				CreationTimestamp: metav1.NewTime(time.Now().Add(-time.Hour)),
				Labels:            map[string]string{"app": "db"},
				Annotations:       map[string]string{"pv.kubernetes.io/provisioned-by": exDriver},
				Finalizers:        []string{"kubernetes.io/pv-protection", "external-provisioner.volume.kubernetes.io/finalizer"},
			},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
				StorageClassName:              "strict",
				MountOptions:                  []string{"noatime"},
				ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: "ns", Name: "claim-" + name, UID: types.UID("claim-" + name), ResourceVersion: "3"},
				PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
					Driver: exDriver, VolumeHandle: handle, FSType: "ext4",
					VolumeAttributes: map[string]string{
						VolumeContextMarker:    "true",
						VolumeContextPolicyKey: "false",
					},
				}},
				NodeAffinity: AffinityFor(Topology{Segments: hostSegments(oldNodes)}),
			},
			Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeBound},
		}
		created, err := b.kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
		b.must(err)
		pvs = append(pvs, created)
	}
	return pvs
}

func hostSegments(nodes []string) []Segment {
	out := make([]Segment, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, Segment{HostnameKey: n})
	}
	return out
}

// reconciler builds a fresh reconciler over the current API state, as a
// restarted sidecar would have: the informer cache is a snapshot of the fake,
// its PVs compact as the sidecar's own cache holds them.
func (b *exBed) reconciler(hook func(Step, string) error) (*Reconciler, *record.FakeRecorder) {
	b.t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	list, err := b.kube.CoreV1().PersistentVolumes().List(context.Background(), metav1.ListOptions{})
	b.must(err)
	for i := range list.Items {
		b.must(idx.Add(compactCopy(b.t, &list.Items[i])))
	}
	scIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	rec := record.NewFakeRecorder(1000)
	exec := &Executor{Kube: b.kube, State: b.linstor, DriverName: exDriver, Timeout: 5 * time.Second, PollInterval: time.Millisecond, AfterStep: hook}
	r := NewReconciler(Options{
		Config:  Config{DriverName: exDriver, GracePeriod: time.Minute, DefaultPolicy: PolicyAnywhere},
		Workers: 4, Timeout: 5 * time.Second, Replicas: b.linstor,
	}, corelisters.NewPersistentVolumeLister(idx), storagelisters.NewStorageClassLister(scIdx), b.linstor, nil, exec, rec, NewMetrics())
	return r, rec
}

// savedStates returns every saved-state property left in LINSTOR.
func (b *exBed) savedStates() map[string]*SavedState {
	v, err := b.linstor.Fetch(context.Background())
	b.must(err)
	byPV, bad := v.SavedStates()
	if len(bad) > 0 {
		b.t.Fatalf("undecodable saved state left: %v", bad[0].Err)
	}
	return byPV
}

// converge runs fresh reconcilers until a cycle changes nothing, at most n.
func (b *exBed) converge(n int) {
	b.t.Helper()
	for i := 0; i < n; i++ {
		r, _ := b.reconciler(nil)
		v, err := b.linstor.Fetch(context.Background())
		b.must(err)
		actions, err := planned(r, v)
		b.must(err)
		if len(actions) == 0 {
			return
		}
		if failed := r.execute(context.Background(), actions); failed > 0 {
			b.t.Fatalf("cycle %d: %d actions failed", i, failed)
		}
	}
	b.t.Fatalf("no convergence after %d cycles", n)
}

// assertHealed checks the invariants of a finished repair: the PV exists with
// the affinity of its replicas, the same claimRef and reclaim policy as before,
// no skip-reclaim annotation, no saved state, and LINSTOR still has the volume.
func (b *exBed) assertHealed(before *corev1.PersistentVolume, nodes []string) {
	b.t.Helper()
	pv, err := b.kube.CoreV1().PersistentVolumes().Get(context.Background(), before.Name, metav1.GetOptions{})
	if err != nil {
		b.t.Fatalf("pv %s lost: %v", before.Name, err)
	}
	if !AffinityMatches(pv.Spec.NodeAffinity, Topology{Segments: hostSegments(nodes)}) {
		b.t.Errorf("pv %s affinity %s, want hosts %v", pv.Name, DescribeAffinity(pv.Spec.NodeAffinity), nodes)
	}
	if pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != before.Spec.ClaimRef.UID || pv.Spec.ClaimRef.Name != before.Spec.ClaimRef.Name {
		b.t.Errorf("pv %s claimRef changed: %+v", pv.Name, pv.Spec.ClaimRef)
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != before.Spec.PersistentVolumeReclaimPolicy {
		b.t.Errorf("pv %s reclaim policy %s, want %s", pv.Name, pv.Spec.PersistentVolumeReclaimPolicy, before.Spec.PersistentVolumeReclaimPolicy)
	}
	if _, ok := pv.Annotations[exDriver+"/skip-reclaim"]; ok {
		b.t.Errorf("pv %s still has the skip-reclaim annotation", pv.Name)
	}
	if pv.Spec.CSI.VolumeHandle != before.Spec.CSI.VolumeHandle || len(pv.Spec.MountOptions) != 1 || pv.Labels["app"] != "db" {
		b.t.Errorf("pv %s lost fields in the replace: %+v", pv.Name, pv.Spec)
	}
	if s := b.savedStates()[pv.Name]; s != nil {
		b.t.Errorf("pv %s saved state left on %s", pv.Name, s.Location())
	}
	ref, _ := ParseVolumeHandle(before.Spec.CSI.VolumeHandle)
	v, err := b.linstor.Fetch(context.Background())
	b.must(err)
	if rd := v.RDs[ref.RD]; rd == nil || len(rd.Resources) == 0 {
		b.t.Errorf("volume %s gone from LINSTOR", ref)
	} else if _, ok := rd.Volumes[ref.Volume]; !ok {
		b.t.Errorf("volume definition %s gone from LINSTOR", ref)
	}
}

func TestReplaceRewritesDriftedPVKeepingEverythingElse(t *testing.T) {
	b := newExBed(t)
	pvs := b.addVolume("vol-a", 1, []string{"n2", "n3"}, []string{"n1", "n2"})
	r, rec := b.reconciler(nil)
	if err := r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.assertHealed(pvs[0], []string{"n2", "n3"})
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
	r2, _ := b.reconciler(nil)
	v, err := b.linstor.Fetch(context.Background())
	b.must(err)
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
	steps := []Step{StepSaveState, StepRetain, StepDelete, StepCreate, StepClearState}
	for _, step := range steps {
		t.Run(string(step), func(t *testing.T) {
			b := newExBed(t)
			pvs := b.addVolume("vol-b", 2, []string{"n3", "n4"}, []string{"n1"})
			other := b.addVolume("vol-c", 1, []string{"n2"}, []string{"n1"})
			crashed := false
			r, _ := b.reconciler(func(s Step, pv string) error {
				if s == step && pv == pvs[1].Name {
					crashed = true
					return ErrInterrupted
				}
				return nil
			})
			err := r.Cycle(context.Background())
			if !crashed {
				t.Fatalf("step %s never reached", step)
			}
			if err == nil && step != StepClearState {
				t.Fatalf("interrupted cycle reported success")
			}
			b.converge(4)
			b.assertHealed(pvs[0], []string{"n3", "n4"})
			b.assertHealed(pvs[1], []string{"n3", "n4"})
			b.assertHealed(other[0], []string{"n2"})
		})
	}
}

// TestReplaceStuckTerminatingFinishes covers a crash after the delete when the
// API server keeps the PV terminating behind finalizers: the restarted sidecar
// strips them and recreates.
func TestReplaceStuckTerminatingFinishes(t *testing.T) {
	b := newExBed(t)
	pvs := b.addVolume("vol-d", 1, []string{"n4"}, []string{"n1"})
	r, _ := b.reconciler(func(s Step, pv string) error {
		if s == StepRetain {
			return ErrInterrupted
		}
		return nil
	})
	_ = r.Cycle(context.Background())
	// Emulate a real API server: the PV is terminating, held by finalizers.
	pv, err := b.kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{})
	b.must(err)
	now := metav1.Now()
	pv.DeletionTimestamp = &now
	_, err = b.kube.CoreV1().PersistentVolumes().Update(context.Background(), pv, metav1.UpdateOptions{})
	b.must(err)
	// Like the API server, drop the object once its finalizers are removed.
	b.kube.PrependReactor("patch", "persistentvolumes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchAction)
		if p.GetPatchType() != types.JSONPatchType || p.GetName() != pv.Name {
			return false, nil, nil
		}
		gvr := corev1.SchemeGroupVersion.WithResource("persistentvolumes")
		current, err := b.kube.Tracker().Get(gvr, "", pv.Name)
		if err != nil {
			return true, nil, err
		}
		if current.(*corev1.PersistentVolume).DeletionTimestamp == nil {
			return false, nil, nil
		}
		return true, current, b.kube.Tracker().Delete(gvr, "", pv.Name)
	})
	b.converge(4)
	b.assertHealed(pvs[0], []string{"n4"})
}

// TestSavedStateOnLegacyLocationIsFinished: the upstream controller's older
// versions left the replacement on the resource definition; the PV is gone.
func TestSavedStateOnLegacyLocationIsFinished(t *testing.T) {
	b := newExBed(t)
	pvs := b.addVolume("vol-e", 1, []string{"n2"}, []string{"n1"})
	repl := Replacement(pvs[0], AffinityFor(Topology{Segments: hostSegments([]string{"n2"})}))
	raw, err := EncodeSavedPV(repl)
	b.must(err)
	b.must(b.kube.CoreV1().PersistentVolumes().Delete(context.Background(), pvs[0].Name, metav1.DeleteOptions{}))
	store := &memStore{Linstor: b.linstor, legacy: map[string]string{"vol-e": raw}}
	v, err := b.linstor.Fetch(context.Background())
	b.must(err)
	v.RDs["vol-e"].LegacySaved = raw
	r, _ := b.reconciler(nil)
	r.exec.State = store
	actions, err := planned(r, v)
	b.must(err)
	if len(actions) != 1 || actions[0].Kind != KindRecreate || !actions[0].Saved.Legacy {
		t.Fatalf("want one recreate from legacy state, got %+v", actions)
	}
	if failed := r.execute(context.Background(), actions); failed != 0 {
		t.Fatal("recreate failed")
	}
	if _, ok := store.legacy["vol-e"]; ok {
		t.Error("legacy saved state not cleared")
	}
	b.assertHealed(pvs[0], []string{"n2"})
}

// memStore stands in for LINSTOR's resource-definition properties, which
// fakelinstor cannot modify, and defers volume definitions to fakelinstor.
type memStore struct {
	*Linstor
	legacy map[string]string
}

func (m *memStore) LoadState(ctx context.Context, ref VolumeRef, legacy bool) (string, error) {
	if legacy {
		return m.legacy[ref.RD], nil
	}
	return m.Linstor.LoadState(ctx, ref, legacy)
}

func (m *memStore) ClearState(ctx context.Context, s *SavedState) error {
	if s.Legacy {
		delete(m.legacy, s.Ref.RD)
		return nil
	}
	return m.Linstor.ClearState(ctx, s)
}

// TestFailedWriteLeavesPVAndRetries: the API server refuses the delete; the
// PV stays, and the next cycle undoes the preparation and tries again.
func TestFailedWriteLeavesPVAndRetries(t *testing.T) {
	b := newExBed(t)
	pvs := b.addVolume("vol-f", 1, []string{"n3"}, []string{"n1"})
	b.kube.PrependReactor("delete", "persistentvolumes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if isDryRun(a) {
			return false, nil, nil
		}
		return true, nil, errors.New("etcd unavailable")
	})
	r, _ := b.reconciler(nil)
	if err := r.Cycle(context.Background()); err == nil {
		t.Fatal("cycle with a failed delete reported success")
	}
	if _, err := b.kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("PV gone after a failed delete: %v", err)
	}
	b.kube.ReactionChain = b.kube.ReactionChain[1:]
	b.converge(4)
	b.assertHealed(pvs[0], []string{"n3"})
}

// quietLog keeps golinstor's request tracing out of test output.
type quietLog struct{}

func (quietLog) Debugf(string, ...any) {}
func (quietLog) Infof(string, ...any)  {}
func (quietLog) Warnf(string, ...any)  {}
func (quietLog) Errorf(string, ...any) {}

// TestDeleteRetriesWhenAnotherControllerTouchedTheRetainedPV: right after the
// Retain patch the external-provisioner drops its finalizer, which changes the
// resourceVersion; the replace must not give up on that.
func TestDeleteRetriesWhenAnotherControllerTouchedTheRetainedPV(t *testing.T) {
	b := newExBed(t)
	pvs := b.addVolume("vol-g", 1, []string{"n3"}, []string{"n1"})
	conflicts := 0
	b.kube.PrependReactor("delete", "persistentvolumes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if isDryRun(a) {
			return false, nil, nil
		}
		if conflicts < 2 {
			conflicts++
			return true, nil, apierrors.NewConflict(corev1.Resource("persistentvolumes"), pvs[0].Name, errors.New("the ResourceVersion in the precondition does not match"))
		}
		return false, nil, nil
	})
	r, _ := b.reconciler(nil)
	if err := r.Cycle(context.Background()); err != nil {
		t.Fatalf("replace gave up after a resourceVersion conflict: %v", err)
	}
	if conflicts != 2 {
		t.Fatalf("%d conflicts served", conflicts)
	}
	b.assertHealed(pvs[0], []string{"n3"})
}

// TestDeleteRefusedWhenRetainWasUndone: if the reclaim policy went back to
// Delete between the Retain patch and the delete, the PV must not be deleted.
func TestDeleteRefusedWhenRetainWasUndone(t *testing.T) {
	b := newExBed(t)
	pvs := b.addVolume("vol-h", 1, []string{"n3"}, []string{"n1"})
	undone := false
	b.kube.PrependReactor("delete", "persistentvolumes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if isDryRun(a) {
			return false, nil, nil
		}
		if !undone {
			undone = true
			pv, err := b.kube.Tracker().Get(corev1.SchemeGroupVersion.WithResource("persistentvolumes"), "", pvs[0].Name)
			b.must(err)
			changed := pv.(*corev1.PersistentVolume).DeepCopy()
			changed.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimDelete
			b.must(b.kube.Tracker().Update(corev1.SchemeGroupVersion.WithResource("persistentvolumes"), changed, ""))
			return true, nil, apierrors.NewConflict(corev1.Resource("persistentvolumes"), pvs[0].Name, errors.New("modified"))
		}
		return false, nil, nil
	})
	r, _ := b.reconciler(nil)
	if err := r.Cycle(context.Background()); err == nil {
		t.Fatal("replace went ahead although the PV's reclaim policy was set back to Delete")
	}
	pv, err := b.kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{})
	if err != nil || pv.UID != pvs[0].UID {
		t.Fatalf("PV deleted: %v", err)
	}
}

// TestInterruptedReplaceKeepsReclaimPolicyUserSet: a replace stopped after
// saving its state, before its retain step; meanwhile a user sets the PV to
// Retain. Finishing the interrupted replace must not set the policy back to
// the Delete recorded in the saved state: the next replace carries Retain.
func TestInterruptedReplaceKeepsReclaimPolicyUserSet(t *testing.T) {
	b := newExBed(t)
	pvs := b.addVolume("vol-i", 1, []string{"n3"}, []string{"n1"})
	r, _ := b.reconciler(func(s Step, _ string) error {
		if s == StepSaveState {
			return ErrInterrupted
		}
		return nil
	})
	if err := r.Cycle(context.Background()); err == nil {
		t.Fatal("interrupted cycle reported success")
	}
	if b.savedStates()[pvs[0].Name] == nil {
		t.Fatal("no saved state after the save-state step")
	}
	pv, err := b.kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{})
	b.must(err)
	pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
	_, err = b.kube.CoreV1().PersistentVolumes().Update(context.Background(), pv, metav1.UpdateOptions{})
	b.must(err)

	b.converge(4)
	want := pvs[0].DeepCopy()
	want.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
	b.assertHealed(want, []string{"n3"})
}

// TestRestorePatchOnlyUndoesTheRetainStep: the reclaim policy is set back
// only when the live PV carries the retain step's skip-reclaim mark.
func TestRestorePatchOnlyUndoesTheRetainStep(t *testing.T) {
	e := &Executor{DriverName: exDriver}
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

// TestDeleteRefusedWhenPVWasEditedAfterRetain: a user labels the PV between
// the Retain patch and the delete. The replacement was built without the
// label, so the old PV must not be deleted; the next cycles undo the retain
// and replace the PV as edited, label included.
func TestDeleteRefusedWhenPVWasEditedAfterRetain(t *testing.T) {
	b := newExBed(t)
	pvs := b.addVolume("vol-j", 1, []string{"n3"}, []string{"n1"})
	edited := false
	b.kube.PrependReactor("delete", "persistentvolumes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if isDryRun(a) {
			return false, nil, nil
		}
		if !edited {
			edited = true
			pv, err := b.kube.Tracker().Get(corev1.SchemeGroupVersion.WithResource("persistentvolumes"), "", pvs[0].Name)
			b.must(err)
			changed := pv.(*corev1.PersistentVolume).DeepCopy()
			changed.Labels["team"] = "billing"
			changed.ResourceVersion = "8"
			b.must(b.kube.Tracker().Update(corev1.SchemeGroupVersion.WithResource("persistentvolumes"), changed, ""))
			return true, nil, apierrors.NewConflict(corev1.Resource("persistentvolumes"), pvs[0].Name, errors.New("modified"))
		}
		return false, nil, nil
	})
	r, _ := b.reconciler(nil)
	if err := r.Cycle(context.Background()); err == nil {
		t.Fatal("replace deleted a PV edited after its retain step")
	}
	pv, err := b.kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{})
	if err != nil || pv.UID != pvs[0].UID {
		t.Fatalf("PV deleted: %v", err)
	}
	b.converge(4)
	b.assertHealed(pvs[0], []string{"n3"})
	pv, err = b.kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{})
	b.must(err)
	if pv.Labels["team"] != "billing" {
		t.Errorf("the user's label was lost in the replace: labels %v", pv.Labels)
	}
}

package controller

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fakebed"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/linstor"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/repair"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	corelisters "k8s.io/client-go/listers/core/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// failCreatesOnce makes the next real (not dry-run) PV create fail with a
// timeout, as an API server that went away mid-request would.
func failCreatesOnce(b *fakebed.Bed) {
	var once sync.Once
	b.Kube.PrependReactor("create", "persistentvolumes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if fakebed.IsDryRun(a) {
			return false, nil, nil
		}
		failed := false
		once.Do(func() { failed = true })
		if failed {
			return true, nil, apierrors.NewTimeoutError("etcd request timed out", 1)
		}
		return false, nil, nil
	})
}

// withCache points r's PV lister at exactly these copies, made compact as
// the sidecar's cache holds them: an informer that has not seen the last
// writes.
func withCache(t *testing.T, r *Reconciler, pvs ...*corev1.PersistentVolume) {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, pv := range pvs {
		if err := idx.Add(compact(t, pv)); err != nil {
			t.Fatal(err)
		}
	}
	r.pvs = corelisters.NewPersistentVolumeLister(idx)
}

// Hole 1: the create fails after the old PV is deleted; a stale informer still
// shows the PV as before the retain. Deciding on that copy said "clear the
// saved state", which removed the only copy of the PV.
func TestStaleCacheAfterFailedCreateRecreatesInsteadOfClearing(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	failCreatesOnce(b)
	r, _ := newReconciler(b, nil)
	if err := r.Cycle(context.Background()); err == nil {
		t.Fatal("cycle with a failed create reported success")
	}
	if _, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("want the PV deleted and not yet recreated, got %v", err)
	}
	// The same instance waits for its informer: the failed replace wrote.
	v, err := b.Linstor.Fetch(context.Background())
	b.Must(err)
	actions, err := planned(r, v)
	b.Must(err)
	if len(actions) != 0 {
		t.Fatalf("decided on a copy from before its own failed replace: %s %s", actions[0].Kind, actions[0].Message)
	}
	// A restarted instance whose informer still shows the PV as it was.
	r2, _ := newReconciler(b, nil)
	withCache(t, r2, pvs[0])
	actions, err = planned(r2, v)
	b.Must(err)
	if len(actions) != 1 || actions[0].Kind != decide.KindClearSaved {
		t.Fatalf("test premise: the stale copy should look alive, got %+v", actions)
	}
	if failed := r2.execute(context.Background(), actions); failed != 0 {
		t.Fatal("finishing from saved state failed")
	}
	b.AssertHealed(pvs[0], []string{"n2"})
}

// Hole 1, variant: the PV still carries Retain and skip-reclaim from the
// interrupted replace, but the informer shows it without them. Clearing the
// state without undoing them let the next replace copy both into the new PV.
func TestStaleCacheAfterRetainStillRestoresThePolicy(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	r, _ := newReconciler(b, func(s repair.Step, _ string) error {
		if s == repair.StepRetain {
			return repair.ErrInterrupted
		}
		return nil
	})
	_ = r.Cycle(context.Background())
	live, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{})
	b.Must(err)
	if live.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		t.Fatalf("test premise: the retain step ran, policy is %s", live.Spec.PersistentVolumeReclaimPolicy)
	}
	r2, _ := newReconciler(b, nil)
	withCache(t, r2, pvs[0])
	v, err := b.Linstor.Fetch(context.Background())
	b.Must(err)
	actions, err := planned(r2, v)
	b.Must(err)
	if failed := r2.execute(context.Background(), actions); failed != 0 {
		t.Fatal("settling failed")
	}
	converge(b, 4)
	b.AssertHealed(pvs[0], []string{"n2"})
}

// Hole 3: two static PVs on one volume both drift. They share the volume
// definition's saved-state slot, so they are repaired one after the other.
func TestPVsSharingAVolumeAreRepairedOneAfterTheOther(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	twin := pvs[0].DeepCopy()
	twin.Name, twin.UID, twin.ResourceVersion = "pv-twin", "twin-uid", ""
	twin.Spec.ClaimRef = &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: "ns", Name: "claim-twin", UID: "claim-twin"}
	twin, err := b.Kube.CoreV1().PersistentVolumes().Create(context.Background(), twin, metav1.CreateOptions{})
	b.Must(err)

	r, rec := newReconciler(b, nil)
	v, err := b.Linstor.Fetch(context.Background())
	b.Must(err)
	actions, err := planned(r, v)
	b.Must(err)
	if len(actions) != 1 || actions[0].Name != twin.Name {
		t.Fatalf("want exactly one replace on the shared volume, of %s (the first by name), got %d actions", twin.Name, len(actions))
	}
	if n := testutil.ToFloat64(r.metrics.PVs.WithLabelValues("drifted", string(decide.ReasonDuplicateHandle))); n != 1 {
		t.Errorf("pvs{drifted,duplicate-handle} = %v, want 1", n)
	}
	if ev := drain(rec); len(ev) != 1 || !strings.Contains(ev[0], "shares volume vol-a") {
		t.Errorf("want one warning naming the shared volume, got %q", ev)
	}
	converge(b, 4)
	b.AssertHealed(pvs[0], []string{"n2"})
	b.AssertHealed(twin, []string{"n2"})
}

// heldStore holds one SaveState back until released, as a slow LINSTOR
// holds a write, and lets it land afterwards.
type heldStore struct {
	*linstor.Linstor
	holdFor string // PV name whose save is held
	held    chan struct{}
	release chan struct{}
}

func (h *heldStore) SaveState(ctx context.Context, ref decide.VolumeRef, pvJSON string) error {
	if pv, err := decide.DecodeSavedPV(pvJSON); err == nil && pv.Name == h.holdFor {
		close(h.held)
		<-h.release
		return h.Linstor.SaveState(context.Background(), ref, pvJSON)
	}
	return h.Linstor.SaveState(ctx, ref, pvJSON)
}

// Hole 3, across instances: one instance's save of PV A is held back by
// LINSTOR; another instance (a new leader) starts the replace of PV B on the
// same slot; A's write lands in the middle of it. B must stop before its
// delete (A's state now holds the slot), and no PV may be lost; A's replace
// goes on with its own state.
func TestHeldBackSlotWriteNeverLosesAPV(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	twin := pvs[0].DeepCopy()
	twin.Name, twin.UID, twin.ResourceVersion = "pv-z-twin", "twin-uid", ""
	twin, err := b.Kube.CoreV1().PersistentVolumes().Create(context.Background(), twin, metav1.CreateOptions{})
	b.Must(err)
	cfg := decide.Config{DriverName: fixture.Driver, DefaultPolicy: decide.PolicyAnywhere}
	decideOne := func(pv *corev1.PersistentVolume) decide.Action {
		v, err := b.Linstor.Fetch(context.Background())
		b.Must(err)
		ref, _ := decide.ParseVolumeHandle(pv.Spec.CSI.VolumeHandle)
		a := decide.Decide(decide.Input{PV: pv, RD: v.RDs[ref.RD], Nodes: v.Nodes, Now: time.Now(), StorageClass: fixture.SC("strict", nil)}, cfg)
		if a.Kind != decide.KindReplace {
			t.Fatalf("test premise: %s should drift, got %s %s", pv.Name, a.Kind, a.Message)
		}
		return a
	}
	aAction, bAction := decideOne(pvs[0]), decideOne(twin)

	store := &heldStore{Linstor: b.Linstor, holdFor: pvs[0].Name, held: make(chan struct{}), release: make(chan struct{})}
	slow := &repair.Executor{Kube: b.Kube, State: store, DriverName: fixture.Driver, Timeout: 5 * time.Second, PollInterval: time.Millisecond}
	aDone := make(chan error, 1)
	go func() { _, err := slow.Execute(context.Background(), aAction); aDone <- err }()
	<-store.held

	landed := false
	other := &repair.Executor{Kube: b.Kube, State: b.Linstor, DriverName: fixture.Driver, Timeout: 5 * time.Second, PollInterval: time.Millisecond,
		AfterStep: func(s repair.Step, _ string) error {
			if s == repair.StepRetain && !landed { // A's held write lands now
				landed = true
				close(store.release)
				if err := <-aDone; err != nil {
					t.Errorf("replace of %s: %v", pvs[0].Name, err)
				}
			}
			return nil
		}}
	if _, err := other.Execute(context.Background(), bAction); !errors.Is(err, repair.ErrSlotTaken) {
		t.Fatalf("replace of %s after the held write landed: err = %v, want ErrSlotTaken", twin.Name, err)
	}
	live, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), twin.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("%s lost: %v", twin.Name, err)
	}
	if live.UID != twin.UID || live.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete ||
		live.Annotations[fixture.Driver+"/skip-reclaim"] != "" || live.Annotations[decide.RetainedFromAnnotation] != "" {
		t.Fatalf("%s not left as it was: uid %s policy %s annotations %v", twin.Name, live.UID, live.Spec.PersistentVolumeReclaimPolicy, live.Annotations)
	}
	converge(b, 4)
	b.AssertHealed(pvs[0], []string{"n2"})
	b.AssertHealed(twin, []string{"n2"})
}

// Hole 4: garbage in the saved-state property of a drifted volume. The replace
// wrote over it and then cleared it; it may have been a PV somebody needs.
func TestUnreadableSavedStateIsNeverWrittenOver(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	const garbage = "{not a PV"
	b.Must(b.Linstor.SaveState(context.Background(), decide.VolumeRef{RD: "vol-a"}, garbage))
	r, rec := newReconciler(b, nil)
	for i := 0; i < 3; i++ {
		if err := r.Cycle(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.AffinityOf(pvs[0].Name); got != "[{linbit.com/hostname=n1}]" {
		t.Fatalf("PV repaired over unreadable saved state: %s", got)
	}
	raw, err := b.Linstor.LoadState(context.Background(), decide.VolumeRef{RD: "vol-a"}, false)
	b.Must(err)
	if raw != garbage {
		t.Fatalf("saved state changed to %q", raw)
	}
	ev := drain(rec)
	if len(ev) != 1 || !strings.Contains(ev[0], "linstor volume-definition set-property vol-a 0 "+decide.SavedPVKey) {
		t.Fatalf("want one warning that says how to remove it, got %q", ev)
	}
}

// Hole 5: in auto, an in-place update refused for another reason than the
// immutable field (here an admission policy) must be surfaced, not answered
// with a recreate.
func TestAutoFallsBackOnlyWhenAffinityIsImmutable(t *testing.T) {
	immutable := apierrors.NewInvalid(schema.GroupKind{Kind: "PersistentVolume"}, "pv",
		field.ErrorList{field.Invalid(field.NewPath("nodeAffinity"), nil, "field is immutable, except for updating from beta label to GA")})
	policy := apierrors.NewInvalid(schema.GroupKind{Kind: "PersistentVolume"}, "pv",
		field.ErrorList{field.Invalid(field.NewPath("metadata", "labels"), nil, "denied by ValidatingAdmissionPolicy 'pv-guard'")})
	if !repair.IsAffinityImmutable(immutable) {
		t.Error("the API server's immutable-field refusal not recognised")
	}
	for _, err := range []error{policy, apierrors.NewInvalid(schema.GroupKind{Kind: "PersistentVolume"}, "pv", nil),
		apierrors.NewForbidden(schema.GroupResource{Resource: "persistentvolumes"}, "pv", errors.New("webhook")), errors.New("x")} {
		if repair.IsAffinityImmutable(err) {
			t.Errorf("IsAffinityImmutable(%v) = true", err)
		}
	}

	b := fakebed.New(t)
	pvs := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	b.Kube.PrependReactor("patch", "persistentvolumes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchActionImpl)
		if strings.Contains(string(p.GetPatch()), "nodeAffinity") && len(p.PatchOptions.DryRun) == 0 {
			return true, nil, policy
		}
		return false, nil, nil
	})
	r, _ := newReconciler(b, nil)
	r.exec.Method = repair.MethodAuto
	if err := r.Cycle(context.Background()); err == nil {
		t.Fatal("refused in-place update reported success")
	}
	after, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{})
	b.Must(err)
	if after.UID != pvs[0].UID {
		t.Fatal("PV recreated after an admission refusal of the in-place update")
	}
}

// Hole 5: a replacement the API server would refuse (an admission policy on
// PV creates) is found by a dry run before anything is written.
func TestRefusedReplacementIsFoundBeforeTheDelete(t *testing.T) {
	for _, verb := range []string{"create", "delete"} {
		t.Run(verb, func(t *testing.T) {
			b := fakebed.New(t)
			pvs := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
			b.Deny = func(v string, _ *corev1.PersistentVolume) error {
				if v == verb {
					return apierrors.NewForbidden(schema.GroupResource{Resource: "persistentvolumes"}, "pv", errors.New("denied by policy"))
				}
				return nil
			}
			r, rec := newReconciler(b, nil)
			if err := r.Cycle(context.Background()); err == nil {
				t.Fatal("refused replace reported success")
			}
			after, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), pvs[0].Name, metav1.GetOptions{})
			b.Must(err)
			if after.ResourceVersion != pvs[0].ResourceVersion {
				t.Fatalf("PV written although the API server would refuse the %s", verb)
			}
			if s := b.SavedStates(); len(s) != 0 {
				t.Fatal("saved state written although the replace could not be done")
			}
			if ev := drain(rec); len(ev) != 1 || !strings.Contains(ev[0], "dry run") {
				t.Fatalf("want one warning naming the dry run, got %q", ev)
			}
		})
	}
}

// Hole 7: a PV that carried skip-reclaim before the replace (a user's, or an
// old upstream version's) kept Retain for good when the replace was
// interrupted after its retain step.
func TestInterruptedReplaceRestoresPolicyOfPVWithSkipReclaim(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	pv := pvs[0].DeepCopy()
	pv.Annotations[fixture.Driver+"/skip-reclaim"] = "true"
	pv, err := b.Kube.CoreV1().PersistentVolumes().Update(context.Background(), pv, metav1.UpdateOptions{})
	b.Must(err)
	r, _ := newReconciler(b, func(s repair.Step, _ string) error {
		if s == repair.StepRetain {
			return repair.ErrInterrupted
		}
		return nil
	})
	_ = r.Cycle(context.Background())
	// The next cycles settle the interrupted replace, then repair again; this
	// time the delete is refused, so the settled PV is what is left.
	b.Deny = func(v string, _ *corev1.PersistentVolume) error {
		if v == "delete" {
			return apierrors.NewForbidden(schema.GroupResource{Resource: "persistentvolumes"}, pv.Name, errors.New("hold"))
		}
		return nil
	}
	r2, _ := newReconciler(b, nil)
	_ = r2.Cycle(context.Background())
	live, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), pv.Name, metav1.GetOptions{})
	b.Must(err)
	if live.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		t.Errorf("reclaim policy %s after undoing the replace, want Delete (the policy before it)", live.Spec.PersistentVolumeReclaimPolicy)
	}
	if live.Annotations[fixture.Driver+"/skip-reclaim"] != "true" {
		t.Errorf("the skip-reclaim the PV had before was removed: %v", live.Annotations)
	}
	if _, ok := live.Annotations[decide.RetainedFromAnnotation]; ok {
		t.Errorf("the replace's mark is left on the PV")
	}
	if s := b.SavedStates(); len(s) != 0 {
		t.Error("saved state left")
	}
}

// failingBed has one PV whose delete an admission policy refuses and three
// healthy drifted ones, and a reconciler on a clock the test moves.
func failingBed(t *testing.T) (b *fakebed.Bed, bad *corev1.PersistentVolume, good []*corev1.PersistentVolume, r *Reconciler, cycle func(advance time.Duration)) {
	b = fakebed.New(t)
	bad = b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})[0]
	for _, rd := range []string{"vol-b", "vol-c", "vol-d"} {
		good = append(good, b.AddVolume(rd, 1, []string{"n3"}, []string{"n1"})[0])
	}
	b.Deny = func(v string, pv *corev1.PersistentVolume) error {
		if v == "delete" && pv.Name == bad.Name {
			return apierrors.NewForbidden(schema.GroupResource{Resource: "persistentvolumes"}, pv.Name, errors.New("denied by policy"))
		}
		return nil
	}
	r, _ = newReconciler(b, nil)
	now := time.Now()
	r.now = func() time.Time { return now }
	cycle = func(advance time.Duration) {
		now = now.Add(advance)
		withCache(t, r, listPVs(t, b)...)
		_ = r.Cycle(context.Background())
	}
	return b, bad, good, r, cycle
}

// Hole 8: a PV whose repair always fails is retried with a doubling backoff
// and one warning Event per attempt, not every cycle; a change of the PV
// starts it over.
func TestFailingPVBacksOff(t *testing.T) {
	b, bad, good, r, cycle := failingBed(t)
	cycle(0)
	for _, pv := range good {
		if got := b.AffinityOf(pv.Name); got != "[{linbit.com/hostname=n3}]" {
			t.Errorf("healthy PV %s not repaired next to the failing one: %s", pv.Name, got)
		}
	}
	// It waits 5 s, then 10 s: in 13 one-second cycles it is tried twice (at
	// 0 s and 5 s; the third try, at 15 s, is after this window).
	for i := 0; i < 13; i++ {
		cycle(time.Second)
	}
	failures := 0
	for _, e := range drainRecorder(r) {
		if strings.Contains(e, EventRepairFailed) {
			failures++
		}
	}
	if failures != 2 {
		t.Errorf("%d failure Events in 14 cycles, want 2 (one per backoff step)", failures)
	}
	if d := testutil.ToFloat64(r.metrics.RepairBackoff.WithLabelValues(bad.Name)); d != 10 {
		t.Errorf("repair_backoff_seconds{pv=%s} = %v, want 10", bad.Name, d)
	}
	if n := testutil.ToFloat64(r.metrics.PVs.WithLabelValues("drifted", string(ReasonBackoff))); n != 1 {
		t.Errorf("pvs{drifted,retry-backoff} = %v, want 1", n)
	}
	// A change of the PV (a person fixes it) starts it over at once.
	b.Deny = nil
	fixed, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), bad.Name, metav1.GetOptions{})
	b.Must(err)
	fixed.Labels["fixed"] = "yes"
	_, err = b.Kube.CoreV1().PersistentVolumes().Update(context.Background(), fixed, metav1.UpdateOptions{})
	b.Must(err)
	cycle(time.Second)
	if got := b.AffinityOf(bad.Name); got != "[{linbit.com/hostname=n2}]" {
		t.Errorf("PV not retried at once after it changed: %s", got)
	}
	if n := len(r.backoff.delays()); n != 0 {
		t.Errorf("%d PVs still in backoff after the repair", n)
	}
}

// Hole 8: a failed attempt gives its rate-limit slot back, so a PV that
// always fails does not use up the slots of the others.
func TestFailingPVGivesItsRateLimitSlotBack(t *testing.T) {
	b, _, good, r, cycle := failingBed(t)
	r.gate.brakes = &Brakes{MaxRepairsPerMinute: 2}
	cycle(0) // the failing PV (first by name) and vol-b get the two slots
	cycle(time.Second)
	if got := b.AffinityOf(good[1].Name); got != "[{linbit.com/hostname=n3}]" {
		t.Fatalf("the failed attempt kept its slot: %s waits although one repair succeeded this minute (%s)", good[1].Name, got)
	}
	if got := b.AffinityOf(good[2].Name); got != "[{linbit.com/hostname=n1}]" {
		t.Fatalf("rate limit of 2 per minute let a third repair through: %s", got)
	}
}

func drainRecorder(r *Reconciler) []string {
	return drain(r.recorder.(*record.FakeRecorder))
}

func listPVs(t *testing.T, b *fakebed.Bed) []*corev1.PersistentVolume {
	t.Helper()
	list, err := b.Kube.CoreV1().PersistentVolumes().List(context.Background(), metav1.ListOptions{})
	b.Must(err)
	out := make([]*corev1.PersistentVolume, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out
}

func TestRateLimitServesTheLongestWaitingFirst(t *testing.T) {
	b := newRepairBackoff(0, 0)
	t0 := time.Now()
	b.noteWaiting(map[string]bool{"pv-z": true}, t0)
	b.noteWaiting(map[string]bool{"pv-z": true, "pv-a": true, "pv-m": true}, t0.Add(time.Minute))
	actions := []decide.Action{{Name: "pv-a"}, {Name: "pv-m"}, {Name: "pv-z"}}
	b.longestWaitingFirst(actions)
	if actions[0].Name != "pv-z" || actions[1].Name != "pv-a" || actions[2].Name != "pv-m" {
		t.Fatalf("order %s %s %s, want pv-z (waited longest), then by name", actions[0].Name, actions[1].Name, actions[2].Name)
	}
	brakes := &Brakes{MaxRepairsPerMinute: 1}
	res := brakes.Apply([]decide.Action{{Kind: decide.KindReplace, Name: "pv-z"}, {Kind: decide.KindReplace, Name: "pv-a"}}, 100, t0)
	if len(res.Allowed) != 1 || res.Allowed[0].Name != "pv-z" {
		t.Fatalf("the slot went to %v, want pv-z", res.Allowed)
	}
	brakes.RepairDone("pv-z", t0, false)
	res = brakes.Apply([]decide.Action{{Kind: decide.KindReplace, Name: "pv-a"}}, 100, t0.Add(time.Second))
	if len(res.Allowed) != 1 {
		t.Fatal("a failed repair kept its rate-limit slot")
	}
}

type fakeOther struct{ active bool }

func (f *fakeOther) Active() (bool, string) { return f.active, "pod piraeus/affinity-controller-x" }

// While another affinity controller is active no new repair starts, but a
// replace already under way is finished; one Event on the sidecar's pod
// says so; repairs resume when it is gone.
func TestOtherControllerHoldsNewRepairs(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	half := b.AddVolume("vol-b", 1, []string{"n3"}, []string{"n1"})
	// vol-b's replace was interrupted after its delete: it must be finished.
	r0, _ := newReconciler(b, func(s repair.Step, pv string) error {
		if s == repair.StepDelete && pv == half[0].Name {
			return repair.ErrInterrupted
		}
		return nil
	})
	withCache(t, r0, half[0])
	_ = r0.Cycle(context.Background())

	other := &fakeOther{active: true}
	r, rec := newReconciler(b, nil)
	r.gate.other = other
	r.gate.self = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "linstor-csi-controller-0", Namespace: "piraeus"}}
	for i := 0; i < 3; i++ {
		withCache(t, r, listPVs(t, b)...)
		_ = r.Cycle(context.Background())
	}
	if got := b.AffinityOf(pvs[0].Name); got != "[{linbit.com/hostname=n1}]" {
		t.Fatalf("PV repaired while another controller is active: %s", got)
	}
	b.AssertHealed(half[0], []string{"n3"})
	if v := testutil.ToFloat64(r.metrics.BrakeHolding.WithLabelValues("other-controller")); v != 1 {
		t.Errorf("brake_holding{other-controller} = %v, want 1", v)
	}
	ev := drain(rec)
	warned := 0
	for _, e := range ev {
		if strings.Contains(e, EventOtherController) {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("%d Events about the other controller over three cycles, want 1: %q", warned, ev)
	}
	other.active = false
	withCache(t, r, listPVs(t, b)...)
	if err := r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.AssertHealed(pvs[0], []string{"n2"})
	if v := testutil.ToFloat64(r.metrics.BrakeHolding.WithLabelValues("other-controller")); v != 0 {
		t.Errorf("brake_holding{other-controller} = %v after it left, want 0", v)
	}
}

package controller

import (
	"reflect"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// blockedPodAt is an unscheduled pod using claims, whose PodScheduled
// condition says message since the given time.
func blockedPodAt(name string, since time.Time, message string, claims ...string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), ResourceVersion: "5",
			Labels: map[string]string{"app": "db"}, Annotations: map[string]string{"a": "b"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "db:1", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionFalse},
			{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: message,
				LastTransitionTime: metav1.NewTime(since)},
		}},
	}
	for i, c := range claims {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "v" + string(rune('a'+i)), VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c}}})
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "cfg", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}})
	return pod
}

const (
	msgAffinity    = "0/3 nodes are available: 3 node(s) didn't match PersistentVolume's node affinity. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
	msgAffinityOld = "0/3 nodes are available: 1 node(s) had taint {x: }, 2 node(s) had volume node affinity conflict."
	msgCPU         = "0/3 nodes are available: 3 Insufficient cpu."
	// msgPVMissing is what the scheduler says between a recreate's delete
	// of the PV and the create of its replacement.
	msgPVMissing = "0/3 nodes are available: 3 node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s). preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
)

func TestVolumeAffinityConflict(t *testing.T) {
	since := fixture.Now.Add(-time.Minute)
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"PV node affinity conflict", blockedPodAt("p", since, msgAffinity, "c"), true},
		{"older wording", blockedPodAt("p", since, msgAffinityOld, "c"), true},
		{"another reason", blockedPodAt("p", since, msgCPU, "c"), false},
		{"scheduled", func() *corev1.Pod {
			p := blockedPodAt("p", since, msgAffinity, "c")
			p.Status.Conditions[1].Status = corev1.ConditionTrue
			return p
		}(), false},
		{"not Unschedulable (e.g. SchedulingGated)", func() *corev1.Pod {
			p := blockedPodAt("p", since, msgAffinity, "c")
			p.Status.Conditions[1].Reason = corev1.PodReasonSchedulingGated
			return p
		}(), false},
		{"no condition yet", &corev1.Pod{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := VolumeAffinityConflict(tc.pod)
			if ok != tc.want {
				t.Fatalf("blocked = %v, want %v", ok, tc.want)
			}
			if ok && !got.Equal(since) {
				t.Fatalf("since = %v, want %v", got, since)
			}
		})
	}
}

func TestPodClaimsIncludeGenericEphemeralVolumes(t *testing.T) {
	pod := blockedPodAt("web-0", fixture.Now, msgAffinity, "data")
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{
		Ephemeral: &corev1.EphemeralVolumeSource{}}})
	got := PodClaims(pod)
	want := []types.NamespacedName{{Namespace: "ns", Name: "data"}, {Namespace: "ns", Name: "web-0-scratch"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("claims = %v, want %v", got, want)
	}
}

// feed hands pod to the set as the pending-pod watch does (transform,
// store, notify) and returns Changed's answer.
func feed(t *testing.T, store cache.Store, b *Blocked, pod *corev1.Pod) bool {
	t.Helper()
	obj, err := b.Transform(pod)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Add(obj); err != nil {
		t.Fatal(err)
	}
	return b.Changed(store, obj)
}

// gone removes pod from the store and notifies as the watch does on a
// DELETED event (with the full object).
func gone(t *testing.T, store cache.Store, b *Blocked, pod *corev1.Pod) {
	t.Helper()
	if err := store.Delete(pod); err != nil {
		t.Fatal(err)
	}
	b.Changed(store, pod)
}

func TestTheWatchCachesOnlyKeys(t *testing.T) {
	b := NewBlocked()
	obj, err := b.Transform(blockedPodAt("web-0", fixture.Now, msgAffinity, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if obj != cache.ExplicitKey("ns/web-0") {
		t.Fatalf("cached %#v, want only the key", obj)
	}
	if b.Len() != 1 {
		t.Fatal("the blocked pod was not recorded on its way into the cache")
	}
}

func TestBlockedFollowsTheWatch(t *testing.T) {
	store := cache.NewStore(cache.MetaNamespaceKeyFunc)
	b := NewBlocked()
	since := fixture.Now.Add(-time.Minute)
	if !feed(t, store, b, blockedPodAt("a", since, msgAffinity, "c1")) {
		t.Fatal("a newly blocked pod did not wake the loop")
	}
	if feed(t, store, b, blockedPodAt("a", since, msgAffinity, "c1")) {
		t.Fatal("the same blocked pod again woke the loop")
	}
	if feed(t, store, b, blockedPodAt("b", since, msgCPU, "c2")) {
		t.Fatal("a pod pending for another reason woke the loop")
	}
	if b.Len() != 1 {
		t.Fatalf("blocked = %d, want 1", b.Len())
	}
	// Blocked no more (the scheduler tried again and found another reason).
	feed(t, store, b, blockedPodAt("a", since, msgCPU, "c1"))
	if b.Len() != 0 {
		t.Fatalf("blocked = %d after the pod's reason changed, want 0", b.Len())
	}
	feed(t, store, b, blockedPodAt("a", since, msgAffinity, "c1"))
	// Scheduled or deleted: the watch reports the object, the store no
	// longer has it.
	gone(t, store, b, blockedPodAt("a", since, msgAffinity, "c1"))
	if b.Len() != 0 {
		t.Fatalf("blocked = %d after the pod left the watch, want 0", b.Len())
	}
	// A relist (nil) drops what the fresh list does not have.
	feed(t, store, b, blockedPodAt("c", since, msgAffinity, "c3"))
	feed(t, store, b, blockedPodAt("d", since, msgAffinity, "c4"))
	if err := store.Delete(cache.ExplicitKey("ns/c")); err != nil {
		t.Fatal(err)
	}
	b.Changed(store, nil)
	if b.Len() != 1 {
		t.Fatalf("after a relist without c: blocked = %d, want 1", b.Len())
	}
	b.Changed(store, cache.DeletedFinalStateUnknown{Key: "ns/d"})
	if b.Len() != 1 {
		t.Fatal("a tombstone for a pod the store still holds removed it")
	}
}

func TestBlockedPodsAreDueAtOnceThenAfterRecheck(t *testing.T) {
	store := cache.NewStore(cache.MetaNamespaceKeyFunc)
	b := NewBlocked()
	for _, p := range []*corev1.Pod{
		blockedPodAt("late", fixture.Now.Add(-time.Second), msgAffinity, "c1"),
		blockedPodAt("early", fixture.Now.Add(-time.Minute), msgAffinity, "c2"),
	} {
		feed(t, store, b, p)
	}
	if next := b.NextDue(fixture.Now); !next.Equal(fixture.Now) {
		t.Fatalf("next due = %v, want now", next)
	}
	due := b.Due(fixture.Now)
	if len(due) != 2 || due[0].Key != "ns/early" || due[1].Key != "ns/late" {
		t.Fatalf("due = %+v, want both, longest blocked first", due)
	}
	if again := b.Due(fixture.Now.Add(time.Second)); len(again) != 0 {
		t.Fatalf("due again after a second: %+v", again)
	}
	if next := b.NextDue(fixture.Now); !next.Equal(fixture.Now.Add(DefaultRecheck)) {
		t.Fatalf("next due = %v, want %v", next, fixture.Now.Add(DefaultRecheck))
	}
	if again := b.Due(fixture.Now.Add(DefaultRecheck)); len(again) != 2 {
		t.Fatalf("due after the recheck interval: %d pods, want 2", len(again))
	}
}

func TestRepairIsCountedOncePerBlockedPodAndPV(t *testing.T) {
	store := cache.NewStore(cache.MetaNamespaceKeyFunc)
	b := NewBlocked()
	since := fixture.Now.Add(-3 * time.Second)
	for _, p := range []*corev1.Pod{
		blockedPodAt("a", since, msgAffinity, "shared", "own"),
		blockedPodAt("b", since.Add(time.Second), msgAffinity, "shared"),
	} {
		feed(t, store, b, p)
	}
	shared := types.NamespacedName{Namespace: "ns", Name: "shared"}
	if got := b.Repaired("pv-shared", b.Waiting(shared)); len(got) != 2 {
		t.Fatalf("repair of a PV two pods wait for counted %d times, want 2", len(got))
	}
	if got := b.Repaired("pv-shared", b.Waiting(shared)); len(got) != 0 {
		t.Fatalf("the same repair counted again: %v", got)
	}
	if got := b.Repaired("pv-own", b.Waiting(types.NamespacedName{Namespace: "ns", Name: "own"})); len(got) != 1 || !got[0].Equal(since) {
		t.Fatalf("repair of pod a's other PV: %v, want [%v]", got, since)
	}
	if got := b.Waiting(types.NamespacedName{Namespace: "other", Name: "shared"}); len(got) != 0 {
		t.Fatalf("a claim of another namespace matched: %v", got)
	}
	// Pod b leaves the set while another PV of its claim is repaired: that
	// repair is still counted for it.
	waiting := b.Waiting(shared)
	feed(t, store, b, blockedPodAt("b", since, msgPVMissing, "shared"))
	if b.Len() != 1 {
		t.Fatalf("blocked = %d after pod b's reason changed, want 1", b.Len())
	}
	if got := b.Repaired("pv-shared-2", waiting); len(got) != 2 {
		t.Fatalf("repair of a PV whose pod left the set meanwhile counted %d times, want 2", len(got))
	}
}

func TestSinceIsRefinedWithinTheTransitionSecond(t *testing.T) {
	second := fixture.Now.Truncate(time.Second)
	for _, tc := range []struct {
		name string
		seen time.Time
		want time.Time
	}{
		{"seen within the second: the watch's delivery is the bound", second.Add(300 * time.Millisecond), second.Add(300 * time.Millisecond)},
		{"seen at the second itself", second, second},
		{"seen a second or more later (a restart, a relist): the second", second.Add(1500 * time.Millisecond), second},
		{"seen before it (clock skew): the second", second.Add(-time.Second), second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := refineSince(second, tc.seen); !got.Equal(tc.want) {
				t.Fatalf("refineSince(%v, %v) = %v, want %v", second, tc.seen, got, tc.want)
			}
		})
	}

	// Through the set: the condition's update with the same transition
	// keeps the first estimate; a later transition is a new blocking.
	store := cache.NewStore(cache.MetaNamespaceKeyFunc)
	b := NewBlocked()
	clock := second.Add(400 * time.Millisecond)
	b.now = func() time.Time { return clock }
	feed(t, store, b, blockedPodAt("a", second, msgAffinity, "c"))
	clock = second.Add(900 * time.Millisecond)
	feed(t, store, b, blockedPodAt("a", second, msgAffinityOld, "c"))
	claim := types.NamespacedName{Namespace: "ns", Name: "c"}
	if got := b.Waiting(claim); len(got) != 1 || !got[0].Since.Equal(second.Add(400*time.Millisecond)) {
		t.Fatalf("since after a message update in the same transition = %v, want %v", got, second.Add(400*time.Millisecond))
	}
	clock = second.Add(5*time.Second + 200*time.Millisecond)
	feed(t, store, b, blockedPodAt("a", second.Add(5*time.Second), msgAffinity, "c"))
	if got := b.Waiting(claim); len(got) != 1 || !got[0].Since.Equal(clock) {
		t.Fatalf("since after a new transition = %v, want %v", got, clock)
	}
}

package controller

import (
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// PendingPodSelector selects the pods the pending-pod watch lists: not yet
// scheduled (no node) and in phase Pending. The API server filters, so the
// watch never carries running pods.
var PendingPodSelector = fields.AndSelectors(
	fields.OneTermEqualSelector("status.phase", string(corev1.PodPending)),
	fields.OneTermEqualSelector("spec.nodeName", ""),
).String()

// The scheduler's words for a pod no node fits because of a PV's node
// affinity: VolumeBinding's "node(s) didn't match PersistentVolume's node
// affinity" (Kubernetes 1.20 and later) and the older "volume node affinity
// conflict".
var affinityConflictWords = []string{
	"didn't match PersistentVolume's node affinity",
	"volume node affinity conflict",
}

// VolumeAffinityConflict reports whether the scheduler found no node for pod
// because of a PV's node affinity, and since when the pod is unschedulable.
func VolumeAffinityConflict(pod *corev1.Pod) (since time.Time, ok bool) {
	for _, c := range pod.Status.Conditions {
		if c.Type != corev1.PodScheduled || c.Status != corev1.ConditionFalse || c.Reason != corev1.PodReasonUnschedulable {
			continue
		}
		for _, w := range affinityConflictWords {
			if strings.Contains(c.Message, w) {
				return c.LastTransitionTime.Time, true
			}
		}
	}
	return time.Time{}, false
}

// PodClaims lists the PersistentVolumeClaims a pod uses, generic ephemeral
// volumes included (their claim is named <pod>-<volume>).
func PodClaims(pod *corev1.Pod) []types.NamespacedName {
	var out []types.NamespacedName
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			out = append(out, types.NamespacedName{Namespace: pod.Namespace, Name: v.PersistentVolumeClaim.ClaimName})
		case v.Ephemeral != nil:
			out = append(out, types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name + "-" + v.Name})
		}
	}
	return out
}

// BlockedPod is a pod the scheduler cannot place because of a PV's node
// affinity.
type BlockedPod struct {
	Key    string
	UID    types.UID
	Claims []types.NamespacedName
	// Since is when the pod became unschedulable, as closely as known (see
	// refineSince).
	Since time.Time
}

// refineSince estimates when a pod became unschedulable from its
// condition's lastTransitionTime, which the API server keeps to the second,
// and when the watch delivered the change. The true time lies in
// [transition, transition+1s) and no later than seen; seen within that
// second bounds it to the watch's delivery delay (milliseconds), so seen is
// the estimate. Seen later (the pod was blocked before this process saw it,
// after a restart or a relist), the transition second is all there is.
func refineSince(transition, seen time.Time) time.Time {
	if !seen.Before(transition) && seen.Sub(transition) < time.Second {
		return seen
	}
	return transition
}

// Blocked keeps the pods blocked by a PV node affinity conflict, fed by the
// pending-pod watch (Observe), and says which of them are due for a LINSTOR
// read: a pod new to the set at once, one still waiting after a read again
// after Recheck.
//
// The pending-pod watch caches nothing of the pods but their keys: its
// transform (Transform) hands each pod to the set as it arrives, and the set
// keeps only the blocked ones, reduced to their claims and since when they
// wait. Thousands of pods pending for other reasons cost a key each.
type Blocked struct {
	// Recheck is how long a pod that is still blocked after its volumes
	// were read waits before they are read again.
	Recheck time.Duration
	// now is the clock (time.Now unless a test sets it).
	now func() time.Time

	mu      sync.Mutex
	pods    map[string]*blockedEntry
	byClaim map[types.NamespacedName][]string
	// woke is set when a pod became blocked since Changed last said so.
	woke bool
}

type blockedEntry struct {
	pod BlockedPod
	// transition is the condition's lastTransitionTime: a pod blocked anew
	// has a later one.
	transition time.Time
	readAt     time.Time
	observed   []string // PVs whose repair was already counted for this pod
}

// DefaultRecheck is Blocked.Recheck when unset.
const DefaultRecheck = 10 * time.Second

// NewBlocked makes an empty set.
func NewBlocked() *Blocked {
	return &Blocked{Recheck: DefaultRecheck, now: time.Now, pods: map[string]*blockedEntry{}, byClaim: map[types.NamespacedName][]string{}}
}

// Transform is the pending-pod watch's transform: it records what the pod
// says (blocked by a PV node affinity conflict or not) and leaves only the
// pod's key for the watch's cache.
func (b *Blocked) Transform(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	if b.update(pod) {
		b.mu.Lock()
		b.woke = true
		b.mu.Unlock()
	}
	return cache.ExplicitKey(pod.Namespace + "/" + pod.Name), nil
}

// Changed takes one change of the pending-pod watch, whose cache is store
// (the callback of NewWatch: the stored key, a deleted pod or tombstone, or
// nil after a relist). A pod no longer in the cache (scheduled, deleted) is
// forgotten; after a relist, every pod the list did not have. It reports
// whether a pod became blocked since it last said so, so the caller can
// wake the loop.
func (b *Blocked) Changed(store cache.Store, obj any) bool {
	if obj == nil {
		keep := map[string]bool{}
		for _, k := range store.ListKeys() {
			keep[k] = true
		}
		b.mu.Lock()
		for k := range b.pods {
			if !keep[k] {
				b.dropLocked(k)
			}
		}
		b.mu.Unlock()
	} else if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		if _, exists, err := store.GetByKey(key); err == nil && !exists {
			b.forget(key)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	woke := b.woke
	b.woke = false
	return woke
}

// update records pod as blocked or not; it reports whether the pod is newly
// blocked (or blocked anew, with a later Since).
func (b *Blocked) update(pod *corev1.Pod) bool {
	key := pod.Namespace + "/" + pod.Name
	transition, blocked := VolumeAffinityConflict(pod)
	if !blocked {
		b.forget(key)
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.pods[key]; ok && e.pod.UID == pod.UID && e.transition.Equal(transition) {
		return false
	}
	b.dropLocked(key)
	since := refineSince(transition, b.now())
	e := &blockedEntry{pod: BlockedPod{Key: key, UID: pod.UID, Claims: PodClaims(pod), Since: since}, transition: transition}
	b.pods[key] = e
	for _, c := range e.pod.Claims {
		b.byClaim[c] = append(b.byClaim[c], key)
	}
	return true
}

func (b *Blocked) forget(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dropLocked(key)
}

func (b *Blocked) dropLocked(key string) {
	e, ok := b.pods[key]
	if !ok {
		return
	}
	delete(b.pods, key)
	for _, c := range e.pod.Claims {
		keys := slices.DeleteFunc(b.byClaim[c], func(k string) bool { return k == key })
		if len(keys) == 0 {
			delete(b.byClaim, c)
		} else {
			b.byClaim[c] = keys
		}
	}
}

// Len is the number of blocked pods.
func (b *Blocked) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pods)
}

// Due returns the blocked pods whose volumes should be read now, oldest
// first, and marks them read at now.
func (b *Blocked) Due(now time.Time) []BlockedPod {
	b.mu.Lock()
	defer b.mu.Unlock()
	var due []BlockedPod
	for _, e := range b.pods {
		if e.readAt.IsZero() || !now.Before(e.readAt.Add(b.Recheck)) {
			e.readAt = now
			due = append(due, e.pod)
		}
	}
	sort.Slice(due, func(i, j int) bool { return due[i].Since.Before(due[j].Since) })
	return due
}

// NextDue is when the earliest blocked pod falls due: now for one never
// read, zero when none is blocked.
func (b *Blocked) NextDue(now time.Time) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	var next time.Time
	for _, e := range b.pods {
		at := now
		if !e.readAt.IsZero() {
			at = e.readAt.Add(b.Recheck)
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}

// Waiting returns the blocked pods waiting on claim, taken as the repair of
// its PV starts. Repaired counts them when the repair ends even if they left
// the set meanwhile: a recreate deletes the PV before it creates the
// replacement, and a pod the scheduler tries again in between is told its
// claim is bound to a missing PV, which is no affinity conflict.
func (b *Blocked) Waiting(claim types.NamespacedName) []BlockedPod {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []BlockedPod
	for _, key := range b.byClaim[claim] {
		out = append(out, b.pods[key].pod)
	}
	return out
}

// Repaired returns, once per pod and PV, when each of pods (Waiting's
// answer as the repair of the PV named pv started) became unschedulable.
func (b *Blocked) Repaired(pv string, pods []BlockedPod) []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []time.Time
	for _, p := range pods {
		if e := b.pods[p.Key]; e != nil && e.pod.UID == p.UID {
			if slices.Contains(e.observed, pv) {
				continue
			}
			e.observed = append(e.observed, pv)
		}
		out = append(out, p.Since)
	}
	return out
}

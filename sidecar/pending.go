package sidecar

import (
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// Why this file exists: the scheduler says which pods a stale PV affinity
// blocks. Such a pod stays Pending with PodScheduled=False, reason
// Unschedulable, and a message naming the PV node affinity conflict. Its
// volumes are the ones worth reading LINSTOR for at once, rather than
// waiting for the next full read; the scheduler re-queues the pod as soon as
// its PV changes.

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

// CompactPod is the transform of the pending-pod watch: it keeps what
// VolumeAffinityConflict and PodClaims read (name, namespace, UID, the
// PodScheduled condition, the claims) and drops the rest, so a cluster with
// thousands of pending pods costs a few hundred bytes for each.
func CompactPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
	}}
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			out.Spec.Volumes = append(out.Spec.Volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: v.PersistentVolumeClaim.ClaimName},
			}})
		case v.Ephemeral != nil:
			out.Spec.Volumes = append(out.Spec.Volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{
				Ephemeral: &corev1.EphemeralVolumeSource{},
			}})
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			out.Status.Conditions = []corev1.PodCondition{{
				Type: c.Type, Status: c.Status, Reason: c.Reason, Message: c.Message, LastTransitionTime: c.LastTransitionTime,
			}}
		}
	}
	return out, nil
}

// BlockedPod is a pod the scheduler cannot place because of a PV's node
// affinity.
type BlockedPod struct {
	Key    string
	UID    types.UID
	Claims []types.NamespacedName
	// Since is when the pod became unschedulable.
	Since time.Time
}

// Blocked keeps the pods blocked by a PV node affinity conflict, fed by the
// pending-pod watch (Observe), and says which of them are due for a LINSTOR
// read: a pod new to the set at once, one still waiting after a read again
// after Recheck.
type Blocked struct {
	// Recheck is how long a pod that is still blocked after its volumes
	// were read waits before they are read again.
	Recheck time.Duration

	mu      sync.Mutex
	pods    map[string]*blockedEntry
	byClaim map[types.NamespacedName]map[string]bool
}

type blockedEntry struct {
	pod      BlockedPod
	readAt   time.Time
	observed map[string]bool // PVs whose repair was already counted for this pod
}

// DefaultRecheck is Blocked.Recheck when unset.
const DefaultRecheck = 10 * time.Second

// NewBlocked makes an empty set.
func NewBlocked() *Blocked {
	return &Blocked{Recheck: DefaultRecheck, pods: map[string]*blockedEntry{}, byClaim: map[types.NamespacedName]map[string]bool{}}
}

// Changed takes one change of the pending-pod watch, whose cache is
// store (the callback of NewWatch: the object, a tombstone, or nil after a
// relist). The watch does not say whether an object was added, updated or
// deleted, so the cache is asked what the pod is now. It reports whether a
// pod became blocked, so the caller can wake the loop.
func (b *Blocked) Changed(store cache.Store, obj any) bool {
	if obj == nil {
		return b.replace(store.List())
	}
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return false
	}
	cur, exists, err := store.GetByKey(key)
	if err != nil || !exists {
		b.forget(key)
		return false
	}
	pod, ok := cur.(*corev1.Pod)
	if !ok {
		return false
	}
	return b.update(pod)
}

// replace makes the set what the pods of a fresh list say.
func (b *Blocked) replace(objs []any) bool {
	keep := map[string]bool{}
	added := false
	for _, o := range objs {
		if pod, ok := o.(*corev1.Pod); ok {
			keep[pod.Namespace+"/"+pod.Name] = true
			if b.update(pod) {
				added = true
			}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range b.pods {
		if !keep[k] {
			b.dropLocked(k)
		}
	}
	return added
}

// update records pod as blocked or not; it reports whether the pod is newly
// blocked (or blocked anew, with a later Since).
func (b *Blocked) update(pod *corev1.Pod) bool {
	key := pod.Namespace + "/" + pod.Name
	since, blocked := VolumeAffinityConflict(pod)
	if !blocked {
		b.forget(key)
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.pods[key]; ok && e.pod.UID == pod.UID && e.pod.Since.Equal(since) {
		return false
	}
	b.dropLocked(key)
	e := &blockedEntry{pod: BlockedPod{Key: key, UID: pod.UID, Claims: PodClaims(pod), Since: since}, observed: map[string]bool{}}
	b.pods[key] = e
	for _, c := range e.pod.Claims {
		if b.byClaim[c] == nil {
			b.byClaim[c] = map[string]bool{}
		}
		b.byClaim[c][key] = true
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
		delete(b.byClaim[c], key)
		if len(b.byClaim[c]) == 0 {
			delete(b.byClaim, c)
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
	for key := range b.byClaim[claim] {
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
			if e.observed[pv] {
				continue
			}
			e.observed[pv] = true
		}
		out = append(out, p.Since)
	}
	return out
}

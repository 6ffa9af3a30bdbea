package controller

import (
	"sort"
	"sync"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"k8s.io/client-go/util/workqueue"
)

// ReasonBackoff: the PV's last repair failed and the same repair waits for its
// backoff to pass before it is tried again.
const ReasonBackoff decide.Reason = "retry-backoff"

// Default per-PV retry backoff: 5 s after the first failure, doubling up to
// 5 minutes (the upstream controller's default resync period), as
// client-go's per-item workqueue rate limiter does it.
const (
	DefaultBackoffBase = 5 * time.Second
	DefaultBackoffMax  = 5 * time.Minute
)

// repairBackoff keeps failing repairs from being retried every cycle: each
// failure of a PV's action doubles the wait before the same action is tried
// again. A success, or a change of what the decision is based on (the input
// fingerprint), starts the PV over. It also remembers since when each PV has
// waited for a repair, so the rate limit serves the longest-waiting first.
type repairBackoff struct {
	limiter workqueue.TypedRateLimiter[string]

	mu      sync.Mutex
	retryAt map[string]backoffEntry
	waiting map[string]time.Time
}

type backoffEntry struct {
	at          time.Time
	delay       time.Duration
	fingerprint uint64
}

func newRepairBackoff(base, max time.Duration) *repairBackoff {
	if base <= 0 {
		base = DefaultBackoffBase
	}
	if max <= 0 {
		max = DefaultBackoffMax
	}
	if max < base {
		max = base
	}
	return &repairBackoff{
		limiter: workqueue.NewTypedItemExponentialFailureRateLimiter[string](base, max),
		retryAt: map[string]backoffEntry{},
		waiting: map[string]time.Time{},
	}
}

// hold reports whether action a must wait for its backoff at now. An action
// whose input changed since the failure is no longer held, and its PV starts
// over. The bool says whether a is held; the duration how long still.
func (b *repairBackoff) hold(a decide.Action, now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.retryAt[a.Name]
	if !ok {
		return false, 0
	}
	if e.fingerprint != decide.Fingerprint(a) {
		b.forgetLocked(a.Name)
		return false, 0
	}
	if now.Before(e.at) {
		return true, e.at.Sub(now)
	}
	return false, 0
}

// failed records a failed attempt of a and returns the wait before the next.
func (b *repairBackoff) failed(a decide.Action, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.limiter.When(a.Name)
	b.retryAt[a.Name] = backoffEntry{at: now.Add(d), delay: d, fingerprint: decide.Fingerprint(a)}
	return d
}

// succeeded starts the PV over.
func (b *repairBackoff) succeeded(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.forgetLocked(name)
	delete(b.waiting, name)
}

func (b *repairBackoff) forgetLocked(name string) {
	b.limiter.Forget(name)
	delete(b.retryAt, name)
}

// failures is how many times in a row the PV's repair failed.
func (b *repairBackoff) failures(name string) int {
	return b.limiter.NumRequeues(name)
}

// delays returns the current wait of every PV in backoff, by name.
func (b *repairBackoff) delays() map[string]time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]time.Duration, len(b.retryAt))
	for name, e := range b.retryAt {
		out[name] = e.delay
	}
	return out
}

// noteWaiting records, for each drifted PV, since when it has waited, and
// forgets PVs no longer drifted (and their backoff: a PV that is fine again
// starts over the next time it drifts).
func (b *repairBackoff) noteWaiting(drifted map[string]bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for name := range drifted {
		if _, ok := b.waiting[name]; !ok {
			b.waiting[name] = now
		}
	}
	for name := range b.waiting {
		if !drifted[name] {
			delete(b.waiting, name)
		}
	}
	for name := range b.retryAt {
		if !drifted[name] {
			b.forgetLocked(name)
		}
	}
}

// longestWaitingFirst orders actions by how long their PV has waited for a
// repair, longest first (ties by name), so a rate limit serves them in turn.
func (b *repairBackoff) longestWaitingFirst(actions []decide.Action) {
	b.mu.Lock()
	defer b.mu.Unlock()
	sort.SliceStable(actions, func(i, j int) bool {
		wi, iok := b.waiting[actions[i].Name]
		wj, jok := b.waiting[actions[j].Name]
		switch {
		case iok && jok && !wi.Equal(wj):
			return wi.Before(wj)
		case iok != jok:
			return iok
		}
		return actions[i].Name < actions[j].Name
	})
}

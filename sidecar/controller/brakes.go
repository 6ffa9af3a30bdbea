package controller

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"k8s.io/klog/v2"
)

// Brakes hold repairs back when LINSTOR's answer looks too bad to be true, or
// when too many PVs would be rewritten too fast. They never hold back the
// completion of a replace already under way (saved state), only new ones.
type Brakes struct {
	// MaxDriftFraction: a cycle in which more than this fraction of the
	// driver's PVs would be replaced repairs nothing, until the same drift is
	// seen on DriftConfirmations consecutive cycles. 0 or >= 1 disables.
	MaxDriftFraction float64
	// MinDrifted: the drift brake only applies with more drifted PVs than this,
	// so small clusters are not held back by one or two moves.
	MinDrifted int
	// DriftConfirmations is how many consecutive cycles must see the same
	// drift before the brake releases.
	DriftConfirmations int
	// Force releases the drift brake at once.
	Force bool
	// MaxRepairsPerMinute bounds replaces in any sliding minute; 0: no bound.
	MaxRepairsPerMinute int

	mu           sync.Mutex
	lastDrift    [32]byte
	seen         int
	recent       []*repairSlot
	pending      map[string]*repairSlot
	driftHolding bool
}

// repairSlot is one repair the rate limit let through: when it was allowed,
// moved to when it ended once RepairDone says so.
type repairSlot struct{ at time.Time }

// BrakeResult says which actions may go ahead and why others wait.
type BrakeResult struct {
	Allowed []decide.Action
	// Held are replaces not done this cycle, with the brake's reason.
	Held []decide.Action
	// DriftHeld is set when the drift brake held the cycle back.
	DriftHeld bool
}

// Reasons of held repairs.
const (
	ReasonDriftBrake  decide.Reason = "drift-brake"
	ReasonRateLimited decide.Reason = "rate-limited"
)

// Apply filters one cycle's actions. total is the number of the driver's PVs.
func (b *Brakes) Apply(actions []decide.Action, total int, now time.Time) BrakeResult {
	return b.apply(actions, total, now, true)
}

// ApplyUnconfirmed is Apply for decisions that cannot confirm a drift: ones
// made on part of LINSTOR (the volumes of blocked pods) or on a view a full
// cycle already decided on. While the drift brake holds, they are held too;
// a drift too large for the brake holds them without counting towards its
// confirmations, which only full reads of LINSTOR give.
func (b *Brakes) ApplyUnconfirmed(actions []decide.Action, total int, now time.Time) BrakeResult {
	return b.apply(actions, total, now, false)
}

func (b *Brakes) apply(actions []decide.Action, total int, now time.Time, confirm bool) BrakeResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Repairs of earlier cycles that never reported an end keep the time
	// they were allowed.
	clear(b.pending)
	var res BrakeResult
	var replaces []decide.Action
	for _, a := range actions {
		if a.Kind == decide.KindReplace {
			replaces = append(replaces, a)
		} else {
			res.Allowed = append(res.Allowed, a)
		}
	}
	if b.driftBrakeHolds(replaces, total, confirm) {
		res.DriftHeld = true
		msg := fmt.Sprintf("held by the drift brake: %d of %d PVs would change (more than %.0f%%); repairs wait until %d consecutive cycles see the same drift, or --force",
			len(replaces), total, b.MaxDriftFraction*100, b.DriftConfirmations)
		for _, a := range replaces {
			res.Held = append(res.Held, held(a, ReasonDriftBrake, msg))
		}
		return res
	}
	for _, a := range replaces {
		if !b.takeRepairSlot(a.Name, now) {
			res.Held = append(res.Held, held(a, ReasonRateLimited,
				fmt.Sprintf("deferred: at most %d repairs per minute (--max-repairs-per-minute)", b.MaxRepairsPerMinute)))
			continue
		}
		res.Allowed = append(res.Allowed, a)
	}
	return res
}

func held(a decide.Action, reason decide.Reason, msg string) decide.Action {
	a.Kind, a.Reason, a.Message = decide.KindNone, reason, msg
	return a
}

// driftBrakeHolds decides the drift brake for this cycle's replaces; only
// a full read (confirm) moves it.
func (b *Brakes) driftBrakeHolds(replaces []decide.Action, total int, confirm bool) bool {
	tooMuch := b.MaxDriftFraction > 0 && b.MaxDriftFraction < 1 && len(replaces) > b.MinDrifted &&
		float64(len(replaces)) > b.MaxDriftFraction*float64(total)
	if !confirm {
		return len(replaces) > 0 && !b.Force && (b.driftHolding || tooMuch)
	}
	if !tooMuch {
		if b.driftHolding {
			klog.InfoS("Drift brake released: the drift is back to normal proportions", "drifted", len(replaces), "pvs", total)
		}
		b.seen, b.driftHolding = 0, false
		return false
	}
	sum := driftSignature(replaces)
	if sum == b.lastDrift {
		b.seen++
	} else {
		b.lastDrift, b.seen = sum, 1
	}
	switch {
	case b.Force:
		klog.InfoS("Drift brake overridden by --force", "drifted", len(replaces), "pvs", total)
	case b.seen >= b.DriftConfirmations:
		klog.InfoS("Drift brake released: the same drift was seen on consecutive cycles", "drifted", len(replaces), "pvs", total, "cycles", b.seen)
	default:
		if !b.driftHolding || b.seen == 1 {
			klog.InfoS("Drift brake holding: an unusually large share of PVs would change; no repairs until the same drift is confirmed",
				"drifted", len(replaces), "pvs", total, "maxFraction", b.MaxDriftFraction, "confirmations", b.DriftConfirmations)
		}
		b.driftHolding = true
		return true
	}
	b.driftHolding = false
	return false
}

// driftSignature identifies a drift: which PVs would get which affinity.
func driftSignature(replaces []decide.Action) [32]byte {
	lines := make([]string, 0, len(replaces))
	for _, a := range replaces {
		lines = append(lines, a.Name+"="+decide.DescribeAffinity(a.Affinity))
	}
	sort.Strings(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{0})
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// takeRepairSlot records a repair of PV name if fewer than
// MaxRepairsPerMinute repairs were allowed or ended in the minute before now.
func (b *Brakes) takeRepairSlot(name string, now time.Time) bool {
	if b.MaxRepairsPerMinute <= 0 {
		return true
	}
	cutoff := now.Add(-time.Minute)
	keep := b.recent[:0]
	for _, s := range b.recent {
		if s.at.After(cutoff) {
			keep = append(keep, s)
		}
	}
	clear(b.recent[len(keep):]) // drop the pointers the pruned tail still holds
	b.recent = keep
	if len(b.recent) >= b.MaxRepairsPerMinute {
		return false
	}
	s := &repairSlot{at: now}
	b.recent = append(b.recent, s)
	if b.pending == nil {
		b.pending = map[string]*repairSlot{}
	}
	b.pending[name] = s
	return true
}

// RepairDone tells the rate limit that the repair of PV name, allowed by the
// last Apply, ended at at; ok says whether it succeeded. A failed repair
// wrote nothing that stays and gives its slot back, so one PV that always
// fails never takes the slots of the others. The repair then counts from that moment: the
// bound holds for the writes themselves, in any sliding minute, however long
// each repair took after its cycle allowed it (counting from the cycle alone
// would let the last writes of one batch and the first of the next, a minute
// later, share a minute).
func (b *Brakes) RepairDone(name string, at time.Time, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, found := b.pending[name]
	if !found {
		return
	}
	delete(b.pending, name)
	if !ok {
		b.recent = slices.DeleteFunc(b.recent, func(r *repairSlot) bool { return r == s })
		return
	}
	if at.After(s.at) {
		s.at = at
	}
}

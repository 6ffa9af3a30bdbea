package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/repair"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

// Gate answers the one question the decision leaves open: may this action
// be carried out now? Decide says what a PV needs; the gate says whether
// the sidecar may do it at this moment; the Executor only executes. Every
// action passes these steps, in this order, before the Executor sees it:
//
// Per decision round (a full cycle, a Redecide, a Demand), cheap, no request:
//
//  1. Fresh input (Fresh, on every decision). The informer cache shows the
//     sidecar's last write to the PV (else awaiting-cache: a decision on the
//     old copy could act twice), and a failed repair of the PV has waited
//     out its backoff (else retry-backoff).
//  2. Brakes (Brake, on the round's actions together). No other affinity
//     controller is active (else other-controller); the drift brake and the
//     rate limit, served longest-waiting PV first (else drift-brake,
//     rate-limited). Brakes hold new replaces only: finishing or undoing a
//     replace from saved state always goes ahead, so no PV is left missing.
//
// Per action, in the worker that then executes it, each a request:
//
//  3. Volume exists (Admit). The CSI driver has the volume of a PV about to
//     be replaced (ControllerGetVolume; else volume-missing).
//  4. Replicas confirmed (Admit). LINSTOR's per-volume list of the replicas
//     agrees with the bulk view the replace was decided on (else
//     replicas-unconfirmed; sidecar/confirm.go).
//  5. Live read (the Executor, inside each write). The writes read what they
//     build on from the API server and LINSTOR, never from the cache, and
//     stop when it is no longer what was decided on. These reads stay in the
//     writes: the write is built from the copy read, or its precondition is
//     the check. A replace by recreate reads the PV live, checks that it has
//     the UID and resourceVersion decided on (Executor.liveAsDecided; else
//     ErrChangedSinceDecision: no failure, no backoff) and builds the
//     replacement, its saved state and the retain patch from that copy; it
//     reads the saved-state slot before the save (claimSlot) and its own
//     state back after it and before the delete (ownSlot). A replace in place
//     reads nothing: its one patch carries the UID and resourceVersion
//     decided on, and the API server's conflict is the check
//     (Executor.replaceInPlace). Recreating or clearing from saved state
//     reads the slot and the PV live first (Executor.finishSaved): the slot
//     changed since it was read: nothing is done; the PV missing or
//     terminating: recreate it; alive: undo the retain on the live copy,
//     then clear, only while the slot holds exactly the text read
//     (clearState).
//
// After the write, the gate learns what the cache must show before step 1
// lets the PV through again (expect).
type Gate struct {
	// mu guards expectations and otherActive: workers record writes while
	// the loop decides.
	mu sync.Mutex

	// Fresh input.
	expectationTimeout time.Duration
	backoff            *repairBackoff
	expectations       map[string]expectation

	// Brakes.
	other       OtherController
	otherActive bool
	brakes      *Brakes
	self        runtime.Object

	// Per action.
	driver   Driver
	replicas ReplicaConfirmer
	timeout  time.Duration

	metrics  *Metrics
	recorder record.EventRecorder
}

func newGate(opts Options, driver Driver, backoff *repairBackoff, metrics *Metrics, recorder record.EventRecorder) *Gate {
	return &Gate{
		expectationTimeout: opts.ExpectationTimeout, backoff: backoff, expectations: map[string]expectation{},
		other: opts.OtherController, brakes: opts.Brakes, self: opts.Self,
		driver: driver, replicas: opts.Replicas, timeout: opts.Timeout,
		metrics: metrics, recorder: recorder,
	}
}

// ReasonAwaitingCache: the sidecar wrote this PV and its informer has not
// shown the write yet; deciding on the old copy could act twice.
const ReasonAwaitingCache decide.Reason = "awaiting-cache"

// Fresh is step 1: it holds back (KindNone, with the reason) an action
// decided on a cached PV that does not show the sidecar's last write yet,
// and one whose last attempts failed and whose backoff has not passed.
func (g *Gate) Fresh(a decide.Action, now time.Time) decide.Action {
	if a.Kind != decide.KindNone && g.cacheStale(a.Name, a.PV, now) {
		a = decide.Action{Kind: decide.KindNone, Reason: ReasonAwaitingCache, Message: "waiting for the informer to show the last write", PV: a.PV, Name: a.Name}
	}
	if a.Kind != decide.KindNone {
		if held, wait := g.backoff.hold(a, now); held {
			a.Kind, a.Reason, a.Affinity = decide.KindNone, ReasonBackoff, nil
			a.Message = fmt.Sprintf("the last %d attempts failed; next attempt in %s", g.backoff.failures(a.Name), wait.Round(time.Second))
		}
	}
	return a
}

// expectation records a write the informer cache has not shown yet. When
// the written PV is known (written, uid), the cache has caught up once it shows
// that PV with another resourceVersion than staleRV; when a write failed
// half way (its result unknown), once it no longer shows the copy the
// decision was made on (staleUID, staleRV).
type expectation struct {
	written   bool
	uid       types.UID
	staleUID  types.UID
	staleRV   string
	expiresAt time.Time
}

func (e expectation) caughtUp(cached *corev1.PersistentVolume) bool {
	if e.written {
		return cached != nil && cached.UID == e.uid && cached.ResourceVersion != e.staleRV
	}
	return cached == nil || cached.UID != e.staleUID || cached.ResourceVersion != e.staleRV
}

// cacheStale reports whether the cache still shows a PV as it was before this
// sidecar's last write to it; deciding on that would act twice.
func (g *Gate) cacheStale(name string, cached *corev1.PersistentVolume, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	exp, ok := g.expectations[name]
	if !ok {
		return false
	}
	caughtUp := exp.caughtUp(cached)
	if caughtUp || now.After(exp.expiresAt) {
		switch {
		case caughtUp:
		case exp.written:
			klog.InfoS("Informer did not show the last write in time; deciding from the cache anyway", "pv", name)
		default:
			klog.V(2).InfoS("Stopped waiting for the cache after a failed write whose effect could not be read back", "pv", name)
		}
		delete(g.expectations, name)
		return false
	}
	return true
}

// awaitingCache reports whether any write is still to show in the cache.
func (g *Gate) awaitingCache() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.expectations) > 0
}

// unknownWriteWait bounds the wait for the cache after a failed write whose
// effect is unknown.
const unknownWriteWait = 10 * time.Second

// expect records what the informer must show before the PV is decided on
// again: the written PV when the action left one, otherwise, if the action
// wrote anything at all (and maybe failed), any copy other than the one
// decided on.
func (g *Gate) expect(name string, out repair.Outcome, before *corev1.PersistentVolume, now time.Time) {
	written := out.PV
	var exp expectation
	switch {
	case written != nil:
		if before != nil && written.UID == before.UID && written.ResourceVersion == before.ResourceVersion {
			return // nothing was written to the PV: the cache is not behind
		}
		exp.written, exp.uid = true, written.UID
		if before != nil && before.UID == written.UID {
			exp.staleRV = before.ResourceVersion
		}
	case out.Wrote && before != nil:
		exp.staleUID, exp.staleRV = before.UID, before.ResourceVersion
	default:
		return
	}
	timeout := g.expectationTimeout
	if !exp.written && timeout > unknownWriteWait {
		// A failed write whose effect could not be read back (the API server
		// went away) may never have reached the PV, so the cache may never
		// change. Wait a little, not the full timeout: every write carries
		// the UID and resourceVersion it was decided on, so a decision on a
		// copy the write did change fails harmlessly.
		timeout = unknownWriteWait
	}
	exp.expiresAt = now.Add(timeout)
	g.mu.Lock()
	g.expectations[name] = exp
	g.mu.Unlock()
}

// Brake is step 2: it passes a round's actions through the brakes, another
// affinity controller first, and returns those that may go ahead and those
// held (KindNone, with the brake's reason and message). fresh says the
// actions were decided on a full read of LINSTOR: only then may they
// confirm a drift the drift brake holds. total is the driver's PVs.
func (g *Gate) Brake(actions []decide.Action, total int, fresh bool, now time.Time) (allowed, holds []decide.Action) {
	allowed, holds = g.holdForOtherController(actions)
	if g.brakes == nil {
		return allowed, holds
	}
	g.backoff.longestWaitingFirst(allowed)
	apply := g.brakes.ApplyUnconfirmed
	if fresh {
		apply = g.brakes.Apply
	}
	res := apply(allowed, total, now)
	if fresh {
		holding := 0.0
		if res.DriftHeld {
			holding = 1
		}
		g.metrics.BrakeHolding.WithLabelValues("drift").Set(holding)
	}
	return res.Allowed, append(holds, res.Held...)
}

// repairDone tells the rate limit that a replace it let through ended.
func (g *Gate) repairDone(name string, at time.Time, ok bool) {
	if g.brakes != nil {
		g.brakes.RepairDone(name, at, ok)
	}
}

// EventOtherController is the Event on the sidecar's pod while another
// affinity controller holds its writes back.
const EventOtherController = "OtherAffinityControllerActive"

// ReasonOtherController: a repair held back while another affinity
// controller is active; two controllers rewriting the same PVs under
// different Leases could undo each other's replaces.
const ReasonOtherController decide.Reason = "other-controller"

// holdForOtherController holds back every new repair while another
// affinity controller is active. Finishing or undoing a replace this sidecar
// (or anyone) started, from saved state, stays allowed: a PV is never left
// missing. It says so once in the log and as a warning Event on the
// sidecar's pod, and again when the other controller is gone.
func (g *Gate) holdForOtherController(actions []decide.Action) (allowed, holds []decide.Action) {
	if g.other == nil {
		return actions, nil
	}
	active, detail := g.other.Active()
	holding := 0.0
	if active {
		holding = 1
	}
	g.metrics.BrakeHolding.WithLabelValues(string(ReasonOtherController)).Set(holding)
	g.mu.Lock()
	changed := active != g.otherActive
	g.otherActive = active
	g.mu.Unlock()
	if changed && active {
		msg := fmt.Sprintf("another affinity controller is active (%s): holding every new repair until it is gone; turn it off (LinstorCluster spec.affinityController.enabled: false) or remove this sidecar", detail)
		klog.InfoS("Another affinity controller is active; holding every new repair", "other", detail)
		if g.self != nil {
			g.recorder.Event(g.self, corev1.EventTypeWarning, EventOtherController, msg)
		}
	} else if changed {
		klog.InfoS("No other affinity controller is active any more; repairs resume")
	}
	if !active {
		return actions, nil
	}
	kept := actions[:0]
	for _, a := range actions {
		if a.Kind == decide.KindReplace {
			holds = append(holds, held(a, ReasonOtherController, "held while another affinity controller ("+detail+") is active"))
			continue
		}
		kept = append(kept, a)
	}
	return kept, holds
}

// Reasons the per-action steps hold an action for.
const (
	// ReasonVolumeMissing: the CSI driver says the volume does not exist.
	ReasonVolumeMissing decide.Reason = "volume-missing"
	// ReasonDriverUnanswered: the CSI driver could not be asked about the volume.
	ReasonDriverUnanswered decide.Reason = "driver-unanswered"
	// ReasonReplicasUnconfirmed: LINSTOR's per-volume read of the replicas
	// failed or disagrees with the bulk view.
	ReasonReplicasUnconfirmed decide.Reason = "replicas-unconfirmed"
)

// errVolumeMissing: the CSI driver says the volume of a drifted PV does not
// exist, so its PV is not rewritten.
var errVolumeMissing = errors.New("the CSI driver says the volume does not exist; not repairing")

// Verdict is the gate's answer about one action at its per-action steps.
type Verdict struct {
	// Held is why the action may not go ahead now; "" when it may.
	Held decide.Reason
	// Err is what the step that held the action found.
	Err error
}

// Allowed reports whether the action may go ahead.
func (v Verdict) Allowed() bool { return v.Held == "" }

// Admit runs steps 3 and 4 for one action that came through steps 1 and 2,
// right before the Executor carries it out (step 5 is the Executor's live
// reads, see Gate). Only replaces ask: finishing or undoing a replace from
// saved state must go ahead whatever LINSTOR and the driver say, or the PV
// could stay missing.
func (g *Gate) Admit(ctx context.Context, a decide.Action) Verdict {
	if a.Kind != decide.KindReplace {
		return Verdict{}
	}
	if v := g.volumeExists(ctx, a); !v.Allowed() {
		return v
	}
	if err := g.confirmReplicas(ctx, a); err != nil {
		return Verdict{Held: ReasonReplicasUnconfirmed, Err: err}
	}
	return Verdict{}
}

// volumeExists is step 3: the CSI driver is asked whether it has the volume
// (standalone, without a driver, and with a driver that cannot tell: yes).
func (g *Gate) volumeExists(ctx context.Context, a decide.Action) Verdict {
	if g.driver == nil {
		return Verdict{}
	}
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	exists, detail, err := g.driver.VolumeExists(cctx, a.PV.Spec.CSI.VolumeHandle)
	cancel()
	switch {
	case errors.Is(err, ErrCheckUnsupported):
	case err != nil:
		return Verdict{Held: ReasonDriverUnanswered, Err: fmt.Errorf("ask the CSI driver about the volume: %w", err)}
	case !exists:
		return Verdict{Held: ReasonVolumeMissing, Err: errVolumeMissing}
	case detail != "":
		klog.V(2).InfoS("Driver reports an abnormal volume; repairing its affinity anyway", "pv", a.Name, "condition", detail)
	}
	return Verdict{}
}

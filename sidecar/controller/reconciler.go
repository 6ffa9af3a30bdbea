package controller

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/repair"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

// Event reasons.
const (
	EventAffinityUpdated = "VolumeAffinityUpdated"
	EventRepairFailed    = "VolumeAffinityRepairFailed"
	EventCannotHandle    = "VolumeAffinityNotHandled"
)

// LinstorSource reads LINSTOR in bulk once per cycle.
type LinstorSource interface {
	Fetch(ctx context.Context) (*decide.View, error)
}

// Driver is what the loop asks the CSI driver it sits next to. Standalone
// deployments (no CSI socket) pass nil.
type Driver interface {
	// Ready returns nil when the driver is ready and serves topology.
	Ready(ctx context.Context) error
	// VolumeExists asks the driver whether a volume exists (ControllerGetVolume).
	// It returns ErrCheckUnsupported when the driver cannot tell.
	VolumeExists(ctx context.Context, volumeID string) (exists bool, detail string, err error)
}

// OtherController tells whether another affinity controller is active, and
// which (sidecar/rivals implements it).
type OtherController interface {
	Active() (bool, string)
}

// ErrCheckUnsupported means the driver cannot answer a per-volume check.
var ErrCheckUnsupported = errors.New("driver does not support the check")

// Options configure the loop.
type Options struct {
	decide.Config
	// Workers bounds concurrent repairs.
	Workers int
	// Timeout bounds every single API, LINSTOR or CSI call.
	Timeout time.Duration
	// ExpectationTimeout bounds how long a PV the sidecar wrote is left alone
	// waiting for the informer to show the write.
	ExpectationTimeout time.Duration
	// Brakes hold back repairs in suspicious or overwhelming cycles; nil: none.
	Brakes *Brakes
	// BackoffBase and BackoffMax bound the per-PV wait after failed
	// repairs (0: DefaultBackoffBase, DefaultBackoffMax).
	BackoffBase, BackoffMax time.Duration
	// OtherController, when set, says whether another affinity controller
	// (the upstream one) is at work; while it is, no new repair starts.
	OtherController OtherController
	// Self is the sidecar's own pod (a Pod or an ObjectReference to it), for
	// Events about the sidecar itself; nil: no such Events.
	Self runtime.Object
	// Blocked, when set with Volumes, holds the pods the scheduler cannot
	// place because of a PV's node affinity (Blocked, fed by the
	// pending-pod watch). Their volumes are read from LINSTOR at once, by
	// Demand, instead of at the next full read.
	Blocked *Blocked
	// Volumes reads LINSTOR for the volumes of blocked pods only.
	Volumes VolumeSource
	// Replicas re-reads a volume's replicas before its PV is replaced, to
	// confirm the bulk view the replace was decided on (the gate's step 4);
	// nil: no confirmation.
	Replicas ReplicaConfirmer
	// ShutdownGrace is how long repairs under way may go on once the
	// sidecar is told to stop (0: DefaultShutdownGrace). Keep it below the
	// pod's terminationGracePeriodSeconds (30 s by default).
	ShutdownGrace time.Duration
	// FollowUp is how soon a full read follows one that left repairs to a
	// brake (drift confirmations, the rate limit) instead of the period
	// (0: DefaultFollowUp).
	FollowUp time.Duration
	// SkipUnchanged lets a cycle skip deciding when nothing it decides on can
	// have changed: LINSTOR answered with the same bytes (View.Unchanged), no
	// PV or StorageClass changed (NoteInputChange was not called), and the
	// last decision found nothing to do and nothing that depends on the clock
	// (no PV in its grace period, no write awaiting the cache). The caller must
	// then call NoteInputChange on every PV and StorageClass event.
	SkipUnchanged bool
}

// Reconciler decides about every PV of its driver each cycle, passes the
// decisions through the Gate and has the Executor carry out what the gate
// lets through. Reads come from informer caches and one bulk LINSTOR read per
// cycle; the API server sees only writes.
type Reconciler struct {
	opts     Options
	pvs      corelisters.PersistentVolumeLister
	scs      storagelisters.StorageClassLister
	linstor  LinstorSource
	driver   Driver
	gate     *Gate
	exec     *repair.Executor
	recorder record.EventRecorder
	metrics  *Metrics
	now      func() time.Time
	backoff  *repairBackoff

	mu       sync.Mutex
	warned   map[string]string
	notReady string

	// inputGen counts PV and StorageClass changes (NoteInputChange);
	// quietGen is its value when the last full decision found nothing to do
	// (-1: that decision did find something, or none was made yet).
	inputGen atomic.Int64
	quietGen int64
	// firstDone is set once a cycle completed (logged once, for startup).
	firstDone atomic.Bool
	// decoded is set by a cycle that decided on newly decoded LINSTOR data.
	decoded atomic.Bool

	// last is the view of the last full read and total the driver's PVs
	// then; period is Run's. Decisions on PV changes and for blocked pods
	// use last's nodes while it is younger than period.
	last   *decide.View
	total  int
	period time.Duration
	// followUp asks for an early full read: set when a brake held repairs
	// back (drift confirmations, the rate limit) or a failed repair wrote
	// something (saved state the last full read does not show).
	followUp atomic.Bool
	// retryAt is when Run reads LINSTOR in full next: Redecide does not
	// read before then, however many PVs change.
	retryAt time.Time
}

// DefaultShutdownGrace is Options.ShutdownGrace when unset: within the
// 30 s a pod gets by default to stop, with time left to release the Lease.
const DefaultShutdownGrace = 20 * time.Second

// DefaultFollowUp is Options.FollowUp when unset: held repairs are looked
// at again within seconds, as before the full read became slow.
const DefaultFollowUp = 5 * time.Second

// NewReconciler wires a loop. driver may be nil (standalone mode).
func NewReconciler(opts Options, pvs corelisters.PersistentVolumeLister, scs storagelisters.StorageClassLister,
	linstor LinstorSource, driver Driver, exec *repair.Executor, recorder record.EventRecorder, metrics *Metrics) *Reconciler {
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	if opts.ExpectationTimeout <= 0 {
		opts.ExpectationTimeout = time.Minute
	}
	if opts.FollowUp <= 0 {
		opts.FollowUp = DefaultFollowUp
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = DefaultShutdownGrace
	}
	backoff := newRepairBackoff(opts.BackoffBase, opts.BackoffMax)
	return &Reconciler{
		opts: opts, pvs: pvs, scs: scs, linstor: linstor, driver: driver, exec: exec, recorder: recorder, metrics: metrics,
		now: time.Now, warned: map[string]string{}, quietGen: -1, backoff: backoff,
		gate: newGate(opts, driver, backoff, metrics, recorder),
	}
}

// NoteInputChange tells the loop that a PV or StorageClass changed, so the
// next cycle decides afresh even if LINSTOR did not change (SkipUnchanged).
func (r *Reconciler) NoteInputChange() { r.inputGen.Add(1) }

// unchangedSinceQuiet reports whether the last full decision found nothing to
// do and nothing it decided on changed since: it would find the same now.
func (r *Reconciler) unchangedSinceQuiet(view *decide.View) bool {
	if !r.opts.SkipUnchanged || !view.Unchanged {
		return false
	}
	awaiting := r.gate.awaitingCache()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.quietGen >= 0 && r.quietGen == r.inputGen.Load() && !awaiting
}

func (r *Reconciler) noteQuiet(gen int64, quiet bool) {
	awaiting := r.gate.awaitingCache()
	r.mu.Lock()
	defer r.mu.Unlock()
	if quiet && !awaiting {
		r.quietGen = gen
	} else {
		r.quietGen = -1
	}
}

// Run reads LINSTOR in full and reconciles every PV each period, decides
// again on the last read whenever wake fires (a PV or StorageClass
// changed), and serves the pods blocked by a PV's node affinity whenever
// demand fires, until ctx ends. Everything runs on this one goroutine, so
// no two decisions overlap.
func (r *Reconciler) Run(ctx context.Context, period time.Duration, wake, demand <-chan struct{}) {
	r.period = period
	var released time.Time
	next := time.NewTimer(0)
	defer next.Stop()
	var recheck <-chan time.Time
	// streak counts full reads in a row that failed or asked for a follow-up:
	// the next comes after 5 s doubling with each (up to the period), soon
	// enough for drift confirmations and held repairs, without hammering a
	// LINSTOR that keeps failing.
	streak := 0
	nextAt := r.now()
	soon := func() time.Duration { return min(period, r.opts.FollowUp<<min(streak, 16)) }
	for {
		select {
		case <-ctx.Done():
			return
		case <-next.C:
			err := r.Cycle(ctx)
			wait := period
			if err != nil || r.followUp.Load() {
				wait = soon()
				streak++
			} else {
				streak = 0
			}
			if err != nil && ctx.Err() == nil {
				klog.ErrorS(err, "Reconcile cycle failed", "retryIn", wait)
			}
			nextAt = r.now().Add(wait)
			r.retryAt = nextAt
			next.Reset(wait)
		case <-wake:
			if err := r.Redecide(ctx); err != nil && ctx.Err() == nil {
				klog.ErrorS(err, "Reconcile after a PV change failed")
			}
		case <-demand:
		case <-recheck:
		}
		if err := r.Demand(ctx); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Repair for blocked pods failed")
		}
		// A Redecide or Demand whose repairs a brake held, or that failed
		// half way, brings the next full read forward.
		if wait := soon(); r.followUp.Load() && time.Until(nextAt) > wait {
			nextAt = r.now().Add(wait)
			r.retryAt = nextAt
			next.Reset(wait)
		}
		recheck = nil
		if at := r.nextDemand(); !at.IsZero() {
			recheck = time.After(time.Until(at))
		}
		// A cycle that decoded LINSTOR's answers (or the first, which also
		// filled the informer caches) leaves tens of MB of garbage at tens of
		// thousands of volumes; the Go runtime would keep that memory for
		// minutes. Give it back, at most once a minute, so the sidecar is
		// small again while nothing changes.
		if r.decoded.Swap(false) && time.Since(released) >= time.Minute {
			debug.FreeOSMemory()
			released = time.Now()
		}
	}
}

// driverReady asks the CSI driver whether it is ready, and says so when
// that changes; standalone (no driver) is always ready.
func (r *Reconciler) driverReady(ctx context.Context) bool {
	if r.driver == nil {
		return true
	}
	cctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	err := r.driver.Ready(cctx)
	cancel()
	r.noteNotReady(err)
	return err == nil
}

// Cycle runs one reconcile: check the driver, read LINSTOR, decide for every PV
// and saved state, then carry out the decisions with bounded concurrency.
func (r *Reconciler) Cycle(ctx context.Context) error {
	start := r.now()
	r.followUp.Store(false)
	if !r.driverReady(ctx) {
		r.metrics.Reconciles.WithLabelValues("skipped").Inc()
		return nil
	}
	fctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	view, err := r.linstor.Fetch(fctx)
	cancel()
	r.metrics.LinstorFetch.Observe(r.now().Sub(start).Seconds())
	if err != nil {
		r.metrics.Reconciles.WithLabelValues("error").Inc()
		return err
	}
	r.last = view
	if !view.Unchanged {
		r.decoded.Store(true)
	}
	return r.decideOn(ctx, start, view, true)
}

// Redecide decides again on the last full read, without reading LINSTOR,
// after a PV or StorageClass changed: that read is at most one period old,
// and every replace confirms the replicas with LINSTOR before it writes.
// With no read that recent, it reads LINSTOR in full (Cycle).
func (r *Reconciler) Redecide(ctx context.Context) error {
	start := r.now()
	if r.last == nil || start.Sub(r.last.FetchedAt) >= r.period {
		if start.Before(r.retryAt) {
			return nil // the last full read failed: Run tries again at retryAt
		}
		return r.Cycle(ctx)
	}
	if !r.driverReady(ctx) {
		r.metrics.Reconciles.WithLabelValues("skipped").Inc()
		return nil
	}
	view := *r.last
	view.Unchanged = true
	return r.decideOn(ctx, start, &view, false)
}

// decideOn decides for every PV and saved state on view and carries out
// the decisions. fresh says the view was just read in full: only then may
// it confirm a drift the drift brake holds.
func (r *Reconciler) decideOn(ctx context.Context, start time.Time, view *decide.View, fresh bool) error {
	if r.unchangedSinceQuiet(view) {
		klog.V(5).InfoS("LINSTOR, PVs and StorageClasses unchanged; the last decision stands")
		r.metrics.ReconcileDuration.Observe(r.now().Sub(start).Seconds())
		r.finishCycle(start)
		return nil
	}
	// Read before the PVs are listed: a change while deciding makes the
	// next cycle decide again.
	gen := r.inputGen.Load()
	actions, total, quiet, err := r.plan(view)
	if err != nil {
		r.metrics.Reconciles.WithLabelValues("error").Inc()
		return err
	}
	r.noteQuiet(gen, quiet && len(actions) == 0)
	r.total = total
	actions = r.brake(actions, total, fresh)
	failed := r.execute(ctx, actions)
	r.metrics.ReconcileDuration.Observe(r.now().Sub(start).Seconds())
	if failed > 0 {
		r.metrics.Reconciles.WithLabelValues("error").Inc()
		return fmt.Errorf("%d of %d repairs failed", failed, len(actions))
	}
	r.finishCycle(start)
	return nil
}

// finishCycle records a cycle that completed without error.
func (r *Reconciler) finishCycle(start time.Time) {
	if r.firstDone.CompareAndSwap(false, true) {
		klog.InfoS("First reconcile complete", "duration", r.now().Sub(start).Round(time.Millisecond))
	}
	r.metrics.Reconciles.WithLabelValues("success").Inc()
	r.metrics.LastSuccess.Set(float64(r.now().Unix()))
}

// noteNotReady records whether the driver is ready (err nil) and logs a
// change.
func (r *Reconciler) noteNotReady(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg == r.notReady {
		return
	}
	r.notReady = msg
	if err != nil {
		klog.InfoS("CSI driver not ready; not acting until it is", "reason", msg)
	} else {
		klog.InfoS("CSI driver ready")
	}
}

// plan decides about every PV of the driver and every saved state in the
// view, updates the pvs metric, logs skips worth a look, and returns the
// actions that change something, in name order; also how many PVs the
// driver has, and whether no decision depended on the clock or the informer
// catching up (quiet).
func (r *Reconciler) plan(view *decide.View) ([]decide.Action, int, bool, error) {
	now := r.now()
	decisions, total, err := DecideListed(r.pvs, r.scs, view, r.opts.Config, now)
	if err != nil {
		return nil, 0, false, err
	}
	counts := map[[2]string]float64{}
	var actions []decide.Action
	quiet := true
	pending := map[string]bool{}
	for _, a := range decisions {
		if a.Kind != decide.KindNone || a.Reason == decide.ReasonDuplicateHandle {
			pending[a.Name] = true
		}
	}
	r.backoff.noteWaiting(pending, now)
	for _, a := range decisions {
		a = r.gate.Fresh(a, now)
		if a.Reason == ReasonAwaitingCache || a.Reason == decide.ReasonGracePeriod || a.Reason == ReasonBackoff {
			quiet = false
		}
		counts[[2]string{pvStatus(a), string(a.Reason)}]++
		r.noteWarning(a)
		if a.Kind != decide.KindNone {
			actions = append(actions, a)
		}
	}
	r.metrics.PVs.Reset()
	for k, n := range counts {
		r.metrics.PVs.WithLabelValues(k[0], k[1]).Set(n)
	}
	return actions, total, quiet, nil
}

// noteWarning logs and records a warning Event once per PV and problem, and
// forgets the problem once the PV is fine again, so a persistent problem is
// said once rather than every cycle.
func (r *Reconciler) noteWarning(a decide.Action) {
	key := a.Name
	if key == "" && a.Saved != nil {
		key = "saved:" + a.Saved.Location()
	}
	r.mu.Lock()
	prev, had := r.warned[key]
	msg := string(a.Reason) + ": " + a.Message
	if a.Warn {
		r.warned[key] = msg
	} else {
		delete(r.warned, key)
	}
	r.mu.Unlock()
	if !a.Warn || (had && prev == msg) {
		if a.Kind == decide.KindNone {
			klog.V(5).InfoS("No change", "pv", a.Name, "reason", a.Reason, "detail", a.Message)
		}
		return
	}
	klog.InfoS("Cannot handle volume", "pv", a.Name, "reason", a.Reason, "detail", a.Message)
	if a.PV != nil {
		r.recorder.Event(a.PV, corev1.EventTypeWarning, EventCannotHandle, a.Message)
	}
}

// execute carries out actions with at most Workers at a time and returns how
// many failed.
//
// Once ctx ends (the sidecar is told to stop) no further action starts, and
// those under way get ShutdownGrace to finish: a replace cut short is safe
// (its saved state lets the next leader finish it), but that waits for the
// Lease to change hands, and the PV is missing meanwhile.
func (r *Reconciler) execute(ctx context.Context, actions []decide.Action) int {
	var (
		wg     sync.WaitGroup
		failed atomic.Int32
		sem    = make(chan struct{}, r.opts.Workers)
	)
	actx, cancel := graceContext(ctx, r.opts.ShutdownGrace)
	defer cancel()
	for _, a := range actions {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(a decide.Action) {
			defer func() { <-sem; wg.Done() }()
			err := r.act(actx, a)
			if a.Kind == decide.KindReplace {
				r.gate.repairDone(a.Name, r.now(), err == nil)
			}
			if err != nil && !errors.Is(err, repair.ErrChangedSinceDecision) {
				failed.Add(1)
			}
		}(a)
	}
	wg.Wait()
	r.metrics.RepairBackoff.Reset()
	for name, d := range r.backoff.delays() {
		r.metrics.RepairBackoff.WithLabelValues(name).Set(d.Seconds())
	}
	return int(failed.Load())
}

// graceContext is a context for work that should outlive ctx by at most
// grace: it ends grace after ctx does, or when cancelled.
func graceContext(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	out, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-out.Done():
			return
		case <-ctx.Done():
		}
		klog.InfoS("Stopping: letting the repairs under way finish", "grace", grace)
		select {
		case <-out.Done():
		case <-time.After(grace):
			klog.InfoS("Stopping: repairs still under way are cut short; their saved state lets the next leader finish them")
			cancel()
		}
	}()
	return out, cancel
}

// act carries out one action: the gate's per-action steps, then the
// Executor, then the records.
// A failure puts the PV in backoff: the same action waits, doubling with each
// failure, and each failure makes one warning Event. A PV that changed since
// the decision is no failure: the next cycle decides on the new copy.
func (r *Reconciler) act(ctx context.Context, a decide.Action) error {
	err := r.attempt(ctx, a)
	if errors.Is(err, repair.ErrChangedSinceDecision) {
		klog.InfoS("PV changed since the decision; not repairing it on the old copy", "pv", a.Name, "detail", err.Error())
		return err
	}
	if err != nil {
		wait := r.backoff.failed(a, r.now())
		klog.ErrorS(err, "Repair failed; retrying after a backoff", "pv", a.Name, "action", a.Kind,
			"failures", r.backoff.failures(a.Name), "retryIn", wait.Round(time.Second))
		if a.PV != nil {
			reason := EventRepairFailed
			if errors.Is(err, errVolumeMissing) {
				reason = EventCannotHandle // refused, not failed
			}
			r.recorder.Eventf(a.PV, corev1.EventTypeWarning, reason, "%s failed (attempt %d; next in %s): %v",
				a.Kind, r.backoff.failures(a.Name), wait.Round(time.Second), err)
		}
		return err
	}
	r.backoff.succeeded(a.Name)
	return nil
}

func (r *Reconciler) attempt(ctx context.Context, a decide.Action) error {
	klog.InfoS("Acting on PV", "pv", a.Name, "action", a.Kind, "reason", a.Reason, "detail", a.Message)
	if v := r.gate.Admit(ctx, a); !v.Allowed() {
		result := "error"
		if v.Held == ReasonVolumeMissing {
			result = "refused"
		}
		r.metrics.Repairs.WithLabelValues(string(a.Kind), "", result).Inc()
		return v.Err
	}
	waiting := r.waitingOn(a)
	started := r.now()
	out, err := r.exec.Execute(ctx, a)
	if err != nil && out.Wrote && out.PV == nil {
		out.PV, out.Wrote = r.afterFailure(ctx, a)
	}
	if err != nil && out.Wrote {
		// Half done: saved state, maybe a missing PV, that only a full
		// read shows (a PV change decides on the last one).
		r.followUp.Store(true)
	}
	r.gate.expect(a.Name, out, a.PV, r.now())
	if errors.Is(err, repair.ErrChangedSinceDecision) {
		return err // nothing was written
	}
	method := out.Method
	if err != nil {
		r.metrics.Repairs.WithLabelValues(string(a.Kind), method, "error").Inc()
		return err
	}
	r.metrics.Repairs.WithLabelValues(string(a.Kind), method, "success").Inc()
	pv := out.PV
	r.noteRepaired(pv, waiting)
	if a.Kind != decide.KindReplace && (pv == nil || out.Method == "") {
		klog.InfoS("Settled saved state", "pv", a.Name, "location", a.Saved.Location())
		return nil
	}
	klog.InfoS("Updated PV affinity", "pv", a.Name, "method", method, "affinity", decide.DescribeAffinity(pv.Spec.NodeAffinity),
		"duration", r.now().Sub(started).Round(time.Millisecond))
	msg := fmt.Sprintf("Node affinity set to %s (%s) to follow the LINSTOR replicas", decide.DescribeAffinity(pv.Spec.NodeAffinity), method)
	r.recorder.Event(pv, corev1.EventTypeNormal, EventAffinityUpdated, msg)
	if ref := pv.Spec.ClaimRef; ref != nil {
		r.recorder.Event(claimObject(ref), corev1.EventTypeNormal, EventAffinityUpdated,
			fmt.Sprintf("PersistentVolume %s: %s", pv.Name, msg))
	}
	return nil
}

// afterFailure reads the PV live after an action failed half way, so the
// expectation names what the cache must show: the PV as it is now (nil:
// gone), or nothing at all when the failed action did not change it. When
// the read fails too, the action's word that it wrote stands.
func (r *Reconciler) afterFailure(ctx context.Context, a decide.Action) (*corev1.PersistentVolume, bool) {
	live, err := r.exec.Get(ctx, a.Name)
	switch {
	case apierrors.IsNotFound(err):
		return nil, true
	case err != nil:
		return nil, true
	case a.PV != nil && live.UID == a.PV.UID && live.ResourceVersion == a.PV.ResourceVersion:
		return nil, false // nothing reached the PV
	}
	return live, true
}

// claimObject turns a claimRef into an object an event can be recorded on,
// without reading the claim from the API server.
func claimObject(ref *corev1.ObjectReference) *corev1.PersistentVolumeClaim {
	pvc := &corev1.PersistentVolumeClaim{}
	pvc.Name, pvc.Namespace, pvc.UID = ref.Name, ref.Namespace, ref.UID
	return pvc
}

// brake is the gate's step 2 for one round's actions, and records what it
// holds back: a metric for each, a warning Event per PV held by the drift
// brake, a log line per PV deferred by the rate limit, and an early full
// read when a brake (not another controller) held anything.
func (r *Reconciler) brake(actions []decide.Action, total int, fresh bool) []decide.Action {
	allowed, held := r.gate.Brake(actions, total, fresh, r.now())
	for _, a := range held {
		r.metrics.RepairsHeld.WithLabelValues(string(a.Reason)).Inc()
		switch a.Reason {
		case ReasonOtherController:
			continue
		case ReasonDriftBrake:
			a.Warn = true
			r.noteWarning(a)
		default:
			klog.V(2).InfoS("Repair deferred", "pv", a.Name, "reason", a.Reason)
		}
		r.followUp.Store(true)
	}
	return allowed
}

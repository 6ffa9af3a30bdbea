package sidecar

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
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

// ReasonAwaitingCache: the sidecar wrote this PV and its informer has not
// shown the write yet; deciding on the old copy could act twice.
const ReasonAwaitingCache Reason = "awaiting-cache"

// LinstorSource reads LINSTOR in bulk once per cycle.
type LinstorSource interface {
	Fetch(ctx context.Context) (*View, error)
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

// ErrCheckUnsupported means the driver cannot answer a per-volume check.
var ErrCheckUnsupported = errors.New("driver does not support the check")

// Options configure the loop.
type Options struct {
	Config
	// Workers bounds concurrent repairs.
	Workers int
	// Timeout bounds every single API, LINSTOR or CSI call.
	Timeout time.Duration
	// ExpectationTimeout bounds how long a PV the sidecar wrote is left alone
	// waiting for the informer to show the write.
	ExpectationTimeout time.Duration
	// Brakes hold back repairs in suspicious or overwhelming cycles; nil: none.
	Brakes *Brakes
	// SkipUnchanged lets a cycle skip deciding when nothing it decides on can
	// have changed: LINSTOR answered with the same bytes (View.Unchanged), no
	// PV or StorageClass changed (NoteInputChange was not called), and the
	// last decision found nothing to do and nothing that depends on the clock
	// (no PV in its grace period, no write awaiting the cache). The caller must
	// then call NoteInputChange on every PV and StorageClass event.
	SkipUnchanged bool
}

// Reconciler decides about every PV of its driver each cycle and carries out
// the decisions. Reads come from informer caches and one bulk LINSTOR read per
// cycle; the API server sees only writes.
type Reconciler struct {
	opts     Options
	pvs      corelisters.PersistentVolumeLister
	scs      storagelisters.StorageClassLister
	linstor  LinstorSource
	driver   Driver
	exec     *Executor
	recorder record.EventRecorder
	metrics  *Metrics
	now      func() time.Time

	mu           sync.Mutex
	expectations map[string]expectation
	warned       map[string]string
	notReady     string
	lastFetch    atomic.Int64

	// inputGen counts PV and StorageClass changes (NoteInputChange);
	// quietGen is its value when the last full decision found nothing to do
	// (-1: that decision did find something, or none was made yet).
	inputGen atomic.Int64
	quietGen int64
	// firstDone is set once a cycle completed (logged once, for startup).
	firstDone atomic.Bool
	// decoded is set by a cycle that decided on newly decoded LINSTOR data.
	decoded atomic.Bool
}

// expectation records a write the informer cache has not shown yet.
type expectation struct {
	uid       types.UID
	staleRV   string
	expiresAt time.Time
}

// NewReconciler wires a loop. driver may be nil (standalone mode).
func NewReconciler(opts Options, pvs corelisters.PersistentVolumeLister, scs storagelisters.StorageClassLister,
	linstor LinstorSource, driver Driver, exec *Executor, recorder record.EventRecorder, metrics *Metrics) *Reconciler {
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	if opts.ExpectationTimeout <= 0 {
		opts.ExpectationTimeout = time.Minute
	}
	return &Reconciler{
		opts: opts, pvs: pvs, scs: scs, linstor: linstor, driver: driver, exec: exec, recorder: recorder, metrics: metrics,
		now: time.Now, expectations: map[string]expectation{}, warned: map[string]string{}, quietGen: -1,
	}
}

// NoteInputChange tells the loop that a PV or StorageClass changed, so the
// next cycle decides afresh even if LINSTOR did not change (SkipUnchanged).
func (r *Reconciler) NoteInputChange() { r.inputGen.Add(1) }

// unchangedSinceQuiet reports whether the last full decision found nothing to
// do and nothing it decided on changed since: it would find the same now.
func (r *Reconciler) unchangedSinceQuiet(view *View) bool {
	if !r.opts.SkipUnchanged || !view.Unchanged {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.quietGen >= 0 && r.quietGen == r.inputGen.Load() && len(r.expectations) == 0
}

func (r *Reconciler) noteQuiet(gen int64, quiet bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if quiet && len(r.expectations) == 0 {
		r.quietGen = gen
	} else {
		r.quietGen = -1
	}
}

// Run reconciles every period and whenever wake fires, until ctx ends.
func (r *Reconciler) Run(ctx context.Context, period time.Duration, wake <-chan struct{}) {
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	var released time.Time
	for {
		if err := r.Cycle(ctx); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Reconcile cycle failed; retrying next cycle")
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
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-wake:
		}
	}
}

// LastFetch is when LINSTOR was last read successfully (zero if never).
func (r *Reconciler) LastFetch() time.Time {
	ns := r.lastFetch.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Cycle runs one reconcile: check the driver, read LINSTOR, decide for every PV
// and saved state, then carry out the decisions with bounded concurrency.
func (r *Reconciler) Cycle(ctx context.Context) error {
	start := r.now()
	if r.driver != nil {
		cctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
		err := r.driver.Ready(cctx)
		cancel()
		if err != nil {
			r.metrics.Reconciles.WithLabelValues("skipped").Inc()
			r.noteNotReady(err)
			return nil
		}
		r.noteNotReady(nil)
	}
	fctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	view, err := r.linstor.Fetch(fctx)
	cancel()
	r.metrics.LinstorFetch.Observe(r.now().Sub(start).Seconds())
	if err != nil {
		r.metrics.Reconciles.WithLabelValues("error").Inc()
		return err
	}
	r.lastFetch.Store(view.FetchedAt.UnixNano())
	if !view.Unchanged {
		r.decoded.Store(true)
	}
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
	actions = r.brake(actions, total)
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

// Decide decides about every PV of the driver and every saved state in the
// view, updates the pvs metric, logs skips worth a look, and returns the
// actions that change something, in name order.
func (r *Reconciler) Decide(view *View) ([]Action, error) {
	actions, _, _, err := r.plan(view)
	return actions, err
}

// plan is Decide that also returns how many PVs the driver has, and whether
// no decision depended on the clock or the informer catching up (quiet).
func (r *Reconciler) plan(view *View) ([]Action, int, bool, error) {
	pvs, err := r.pvs.List(labels.Everything())
	if err != nil {
		return nil, 0, false, fmt.Errorf("list PVs from cache: %w", err)
	}
	now := r.now()
	decisions, total := DecideAll(pvs, func(pv *corev1.PersistentVolume) *storagev1.StorageClass {
		return StorageClassFor(r.scs, pv)
	}, view, r.opts.Config, now)
	counts := map[[2]string]float64{}
	var actions []Action
	quiet := true
	for _, a := range decisions {
		if a.Kind != KindNone && r.cacheStale(a.Name, a.PV, now) {
			a = Action{Kind: KindNone, Reason: ReasonAwaitingCache, Message: "waiting for the informer to show the last write", PV: a.PV, Name: a.Name}
		}
		if a.Reason == ReasonAwaitingCache || a.Reason == ReasonGracePeriod {
			quiet = false
		}
		counts[[2]string{pvStatus(a), string(a.Reason)}]++
		r.noteWarning(a)
		if a.Kind != KindNone {
			actions = append(actions, a)
		}
	}
	r.metrics.PVs.Reset()
	for k, n := range counts {
		r.metrics.PVs.WithLabelValues(k[0], k[1]).Set(n)
	}
	return actions, total, quiet, nil
}

// DecideAll decides about every PV of the driver and every saved state in the
// view, in name order, leaving out PVs of other drivers. It also returns how
// many PVs the driver has. sc looks up the StorageClass a PV names.
func DecideAll(pvs []*corev1.PersistentVolume, sc func(*corev1.PersistentVolume) *storagev1.StorageClass, view *View, cfg Config, now time.Time) ([]Action, int) {
	saved, bad := view.SavedStates()
	out := make([]Action, 0, len(pvs)+len(saved)+len(bad))
	seen := make(map[string]bool, len(pvs))
	decide := func(in Input) {
		a := Decide(in, cfg)
		if a.Reason != ReasonForeignDriver && a.Reason != ReasonNotCSI {
			out = append(out, a)
		}
	}
	for _, pv := range pvs {
		if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != cfg.DriverName {
			continue
		}
		seen[pv.Name] = true
		in := Input{PV: pv, Saved: saved[pv.Name], Nodes: view.Nodes, Now: now, StorageClass: sc(pv)}
		if ref, err := ParseVolumeHandle(pv.Spec.CSI.VolumeHandle); err == nil {
			in.RD = view.RDs[ref.RD]
		}
		decide(in)
	}
	for name, s := range saved {
		if !seen[name] {
			decide(Input{Saved: s, Nodes: view.Nodes, Now: now})
		}
	}
	for _, s := range bad {
		decide(Input{Saved: s, Nodes: view.Nodes, Now: now})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, len(seen)
}

// cacheStale reports whether the cache still shows a PV as it was before this
// sidecar's last write to it; deciding on that would act twice.
func (r *Reconciler) cacheStale(name string, cached *corev1.PersistentVolume, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	exp, ok := r.expectations[name]
	if !ok {
		return false
	}
	caughtUp := cached != nil && cached.UID == exp.uid && cached.ResourceVersion != exp.staleRV
	if caughtUp || now.After(exp.expiresAt) {
		if !caughtUp {
			klog.InfoS("Informer did not show the last write in time; deciding from the cache anyway", "pv", name)
		}
		delete(r.expectations, name)
		return false
	}
	return true
}

func (r *Reconciler) expect(name string, written *corev1.PersistentVolume, before *corev1.PersistentVolume) {
	if written == nil {
		return
	}
	if before != nil && written.UID == before.UID && written.ResourceVersion == before.ResourceVersion {
		return // nothing was written to the PV: the cache is not behind
	}
	exp := expectation{uid: written.UID, expiresAt: r.now().Add(r.opts.ExpectationTimeout)}
	if before != nil && before.UID == written.UID {
		exp.staleRV = before.ResourceVersion
	}
	r.mu.Lock()
	r.expectations[name] = exp
	r.mu.Unlock()
}

// noteWarning logs and records a warning Event once per PV and problem, and
// forgets the problem once the PV is fine again, so a persistent problem is
// said once rather than every cycle.
func (r *Reconciler) noteWarning(a Action) {
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
		if a.Kind == KindNone {
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
func (r *Reconciler) execute(ctx context.Context, actions []Action) int {
	var (
		wg     sync.WaitGroup
		failed atomic.Int32
		sem    = make(chan struct{}, r.opts.Workers)
	)
	for _, a := range actions {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(a Action) {
			defer func() { <-sem; wg.Done() }()
			err := r.act(ctx, a)
			if a.Kind == KindReplace && r.opts.Brakes != nil {
				r.opts.Brakes.RepairDone(a.Name, r.now())
			}
			if err != nil {
				failed.Add(1)
			}
		}(a)
	}
	wg.Wait()
	return int(failed.Load())
}

// act carries out one action: checks with the driver, executes, records.
func (r *Reconciler) act(ctx context.Context, a Action) error {
	klog.InfoS("Acting on PV", "pv", a.Name, "action", a.Kind, "reason", a.Reason, "detail", a.Message)
	if a.Kind == KindReplace && r.driver != nil {
		cctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
		exists, detail, err := r.driver.VolumeExists(cctx, a.PV.Spec.CSI.VolumeHandle)
		cancel()
		switch {
		case errors.Is(err, ErrCheckUnsupported):
		case err != nil:
			r.metrics.Repairs.WithLabelValues(string(a.Kind), "", "error").Inc()
			klog.ErrorS(err, "Cannot ask the driver about the volume; not repairing this cycle", "pv", a.Name)
			return err
		case !exists:
			r.metrics.Repairs.WithLabelValues(string(a.Kind), "", "refused").Inc()
			msg := "the CSI driver says the volume does not exist; not repairing"
			klog.InfoS("Not repairing PV", "pv", a.Name, "reason", msg)
			r.recorder.Event(a.PV, corev1.EventTypeWarning, EventCannotHandle, msg)
			return nil
		case detail != "":
			klog.V(2).InfoS("Driver reports an abnormal volume; repairing its affinity anyway", "pv", a.Name, "condition", detail)
		}
	}
	started := r.now()
	out, err := r.exec.Execute(ctx, a)
	r.expect(a.Name, out.PV, a.PV)
	method := out.Method
	if err != nil {
		r.metrics.Repairs.WithLabelValues(string(a.Kind), method, "error").Inc()
		klog.ErrorS(err, "Repair failed; will decide again next cycle", "pv", a.Name, "action", a.Kind)
		if a.PV != nil {
			r.recorder.Eventf(a.PV, corev1.EventTypeWarning, EventRepairFailed, "%s failed: %v", a.Kind, err)
		}
		return err
	}
	r.metrics.Repairs.WithLabelValues(string(a.Kind), method, "success").Inc()
	if a.Kind == KindClearSaved {
		klog.InfoS("Cleared saved state", "pv", a.Name, "location", a.Saved.Location())
		return nil
	}
	pv := out.PV
	klog.InfoS("Updated PV affinity", "pv", a.Name, "method", method, "affinity", DescribeAffinity(pv.Spec.NodeAffinity),
		"duration", r.now().Sub(started).Round(time.Millisecond))
	msg := fmt.Sprintf("Node affinity set to %s (%s) to follow the LINSTOR replicas", DescribeAffinity(pv.Spec.NodeAffinity), method)
	r.recorder.Event(pv, corev1.EventTypeNormal, EventAffinityUpdated, msg)
	if ref := pv.Spec.ClaimRef; ref != nil {
		r.recorder.Event(claimObject(ref), corev1.EventTypeNormal, EventAffinityUpdated,
			fmt.Sprintf("PersistentVolume %s: %s", pv.Name, msg))
	}
	return nil
}

// claimObject turns a claimRef into an object an event can be recorded on,
// without reading the claim from the API server.
func claimObject(ref *corev1.ObjectReference) *corev1.PersistentVolumeClaim {
	pvc := &corev1.PersistentVolumeClaim{}
	pvc.Name, pvc.Namespace, pvc.UID = ref.Name, ref.Namespace, ref.UID
	return pvc
}

// StorageClassFor is a helper for reports: the StorageClass a PV names, or nil.
func StorageClassFor(scs storagelisters.StorageClassLister, pv *corev1.PersistentVolume) *storagev1.StorageClass {
	if pv.Spec.StorageClassName == "" {
		return nil
	}
	sc, err := scs.Get(pv.Spec.StorageClassName)
	if err != nil {
		return nil
	}
	return sc
}

// brake passes the cycle's actions through the brakes and records what they
// hold back: a warning Event per PV held by the drift brake (once), a metric.
func (r *Reconciler) brake(actions []Action, total int) []Action {
	if r.opts.Brakes == nil {
		return actions
	}
	res := r.opts.Brakes.Apply(actions, total, r.now())
	holding := 0.0
	if res.DriftHeld {
		holding = 1
	}
	r.metrics.BrakeHolding.WithLabelValues("drift").Set(holding)
	for _, a := range res.Held {
		r.metrics.RepairsHeld.WithLabelValues(string(a.Reason)).Inc()
		if a.Reason == ReasonDriftBrake {
			a.Warn = true
			r.noteWarning(a)
		} else {
			klog.V(2).InfoS("Repair deferred", "pv", a.Name, "reason", a.Reason)
		}
	}
	return res.Allowed
}

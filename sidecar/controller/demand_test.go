package controller

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fakebed"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/repair"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// countingVolumes records what Demand asks LINSTOR for.
type countingVolumes struct {
	inner     VolumeSource
	asked     [][]string
	withNodes []bool
	// during, when set, runs while LINSTOR answers the n-th read (from 1).
	during func(n int)
}

func (c *countingVolumes) FetchVolumes(ctx context.Context, rds []string, nodes map[string]decide.Segment) (*decide.View, error) {
	c.asked = append(c.asked, slices.Clone(rds))
	c.withNodes = append(c.withNodes, nodes != nil)
	if c.during != nil {
		c.during(len(c.asked))
	}
	return c.inner.FetchVolumes(ctx, rds, nodes)
}

// countingSource counts full reads.
type countingSource struct {
	inner LinstorSource
	reads int
}

func (c *countingSource) Fetch(ctx context.Context) (*decide.View, error) {
	c.reads++
	return c.inner.Fetch(ctx)
}

// blockOn makes a pod blocked by a PV node affinity conflict on the claims
// of pvs, known to r's blocked set.
func blockOn(t *testing.T, b *Blocked, name string, since time.Time, pvs ...*corev1.PersistentVolume) {
	t.Helper()
	store := cache.NewStore(cache.MetaNamespaceKeyFunc)
	var claims []string
	for _, pv := range pvs {
		claims = append(claims, pv.Spec.ClaimRef.Name)
	}
	if !feed(t, store, b, blockedPodAt(name, since, msgAffinity, claims...)) {
		t.Fatal("pod not taken as blocked")
	}
}

// demandBed is a reconciler whose last full read (of nodes only: no volume
// in it) is fresh, and a blocked set.
func demandBed(t *testing.T, b *fakebed.Bed) (*Reconciler, *countingVolumes, *countingSource) {
	t.Helper()
	r, _ := newReconciler(b, nil)
	vols := &countingVolumes{inner: b.Linstor}
	full := &countingSource{inner: b.Linstor}
	r.linstor = full
	r.opts.Blocked, r.opts.Volumes = NewBlocked(), vols
	r.period = time.Hour
	v, err := b.Linstor.Fetch(context.Background())
	b.Must(err)
	r.last = &decide.View{Nodes: v.Nodes, RDs: map[string]*decide.RDView{}, FetchedAt: time.Now()}
	r.total = 3
	return r, vols, full
}

func TestBlockedPodsVolumesAreReadAndRepairedAlone(t *testing.T) {
	b := fakebed.New(t)
	waited := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})[0]
	other := b.AddVolume("vol-b", 1, []string{"n3"}, []string{"n1"})[0]
	r, vols, full := demandBed(t, b)
	blockOn(t, r.opts.Blocked, "web-0", time.Now().Add(-2*time.Second), waited)

	if err := r.Demand(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(vols.asked) != 1 || !slices.Equal(vols.asked[0], []string{"vol-a"}) {
		t.Fatalf("LINSTOR asked for %v, want only [vol-a]", vols.asked)
	}
	if !vols.withNodes[0] {
		t.Fatal("the fresh full read's nodes were not passed on")
	}
	if full.reads != 0 {
		t.Fatalf("%d full reads for one blocked pod, want 0", full.reads)
	}
	if got := b.AffinityOf(waited.Name); got != "[{linbit.com/hostname=n2}]" {
		t.Fatalf("the blocked pod's PV: %s, want it to follow its replica to n2", got)
	}
	if got := b.AffinityOf(other.Name); got != "[{linbit.com/hostname=n1}]" {
		t.Fatalf("a PV no pod waits for changed: %s", got)
	}
	if n := testutil.CollectAndCount(r.metrics.BlockedPodRepair); n != 1 {
		t.Fatalf("blocked_pod_repair_seconds series = %d, want 1", n)
	}
	h := histogramOf(t, r)
	if h.GetSampleCount() != 1 || h.GetSampleSum() < 2 {
		t.Fatalf("blocked pod repair observed %d times, sum %.2fs; want once, at least the 2 s the pod waited", h.GetSampleCount(), h.GetSampleSum())
	}
	// The fresher data goes into the last full read, so a decision on it
	// after a PV change does not undo the repair.
	if rd := r.last.RDs["vol-a"]; rd == nil || len(rd.Resources) != 1 || rd.Resources[0].Node != "n2" {
		t.Fatalf("last view's vol-a = %+v, want the fresher read", rd)
	}

	// Still blocked (the scheduler has not retried yet): not read again
	// before the recheck interval.
	if err := r.Demand(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(vols.asked) != 1 {
		t.Fatalf("read again at once: %v", vols.asked)
	}
}

// A recreate deletes the PV before it creates the replacement. A pod whose
// scheduling backoff has run out (it waited longer than 10 s: a slow
// LINSTOR, a big batch) is tried again at the delete, and the scheduler then
// says its claim is bound to a missing PV instead of naming the affinity:
// the pod leaves the blocked set before its repair ends. The repair is still
// the one it waited for, and is timed. (The fault suite's slow-LINSTOR case
// found it: none of 10 repairs was timed.)
func TestBlockedPodRepairIsTimedWhenTheSchedulerRetriesMidRecreate(t *testing.T) {
	b := fakebed.New(t)
	waited := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})[0]
	r, _, _ := demandBed(t, b)
	since := time.Now().Add(-30 * time.Second)
	store := cache.NewStore(cache.MetaNamespaceKeyFunc)
	schedulerSays := func(msg string) {
		feed(t, store, r.opts.Blocked, blockedPodAt("web-0", since, msg, waited.Spec.ClaimRef.Name))
	}
	schedulerSays(msgAffinity)
	r.exec.AfterStep = func(s repair.Step, _ string) error {
		if s == repair.StepDelete {
			schedulerSays(msgPVMissing)
		}
		return nil
	}
	if err := r.Demand(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := b.AffinityOf(waited.Name); got != "[{linbit.com/hostname=n2}]" {
		t.Fatalf("PV not repaired: %s", got)
	}
	if r.opts.Blocked.Len() != 0 {
		t.Fatalf("%d pods blocked, want none: the scheduler no longer names the affinity", r.opts.Blocked.Len())
	}
	h := histogramOf(t, r)
	if h.GetSampleCount() != 1 || h.GetSampleSum() < 30 {
		t.Fatalf("blocked pod repair observed %d times, sum %.2fs; want once, at least the 30 s the pod waited", h.GetSampleCount(), h.GetSampleSum())
	}
}

// Pods recreated together are blocked a moment apart: the first wakes the
// loop, the others are blocked while LINSTOR answers for it. They join its
// batch (one more read) rather than wait for its repairs, each of which
// waits for several LINSTOR answers. (The fault suite's slow-LINSTOR case
// found it: with every answer 5 s late, 9 of 10 pods waited 50 s for the
// repair of the first.) Once only: a pod blocked during that second read
// waits for the next batch.
func TestPodsBlockedWhileLinstorAnswersJoinTheBatch(t *testing.T) {
	b := fakebed.New(t)
	pvA := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})[0]
	pvB := b.AddVolume("vol-b", 1, []string{"n3"}, []string{"n1"})[0]
	pvC := b.AddVolume("vol-c", 1, []string{"n4"}, []string{"n1"})[0]
	r, vols, _ := demandBed(t, b)
	blockOn(t, r.opts.Blocked, "web-0", time.Now(), pvA)
	vols.during = func(n int) {
		switch n {
		case 1:
			blockOn(t, r.opts.Blocked, "web-1", time.Now(), pvB)
		case 2:
			blockOn(t, r.opts.Blocked, "web-2", time.Now(), pvC)
		}
	}
	if err := r.Demand(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := [][]string{{"vol-a"}, {"vol-b"}}; !slices.EqualFunc(vols.asked, want, slices.Equal) {
		t.Fatalf("LINSTOR asked for %v, want %v", vols.asked, want)
	}
	for pv, want := range map[string]string{pvA.Name: "n2", pvB.Name: "n3", pvC.Name: "n1"} {
		if got := b.AffinityOf(pv); got != "[{linbit.com/hostname="+want+"}]" {
			t.Errorf("PV %s: %s, want it on %s", pv, got, want)
		}
	}
	if rd := r.last.RDs["vol-b"]; rd == nil || len(rd.Resources) != 1 || rd.Resources[0].Node != "n3" {
		t.Fatalf("last view's vol-b = %+v, want the second read", rd)
	}
	if err := r.Demand(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := b.AffinityOf(pvC.Name); got != "[{linbit.com/hostname=n4}]" {
		t.Fatalf("the pod blocked during the second read was not served by the next batch: %s", got)
	}
}

func TestBlockedPodsWaitForTheFirstFullRead(t *testing.T) {
	b := fakebed.New(t)
	waited := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})[0]
	r, vols, _ := demandBed(t, b)
	r.last = nil
	blockOn(t, r.opts.Blocked, "web-0", time.Now(), waited)
	if err := r.Demand(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(vols.asked) != 0 {
		t.Fatalf("LINSTOR read for a blocked pod before any full read: %v", vols.asked)
	}
	if next := r.nextDemand(); !next.IsZero() {
		t.Fatalf("a recheck was scheduled (%v) while no full read was made: the loop would spin", next)
	}
}

func TestBlockedPodsWithAnOldFullReadAlsoReadTheNodes(t *testing.T) {
	b := fakebed.New(t)
	waited := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})[0]
	r, vols, _ := demandBed(t, b)
	r.last.FetchedAt = time.Now().Add(-2 * r.period)
	blockOn(t, r.opts.Blocked, "web-0", time.Now(), waited)
	if err := r.Demand(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(vols.withNodes) != 1 || vols.withNodes[0] {
		t.Fatalf("nodes older than a period were reused: %v", vols.withNodes)
	}
	if got := b.AffinityOf(waited.Name); got != "[{linbit.com/hostname=n2}]" {
		t.Fatalf("PV not repaired: %s", got)
	}
}

func TestBlockedPodRepairsRespectTheDriftBrake(t *testing.T) {
	b := fakebed.New(t)
	waited := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})[0]
	r, vols, _ := demandBed(t, b)
	r.opts.Brakes = &Brakes{MaxDriftFraction: 0.5, DriftConfirmations: 3}
	r.opts.Brakes.driftHolding = true // a full read saw too much drift
	r.gate.brakes = r.opts.Brakes
	blockOn(t, r.opts.Blocked, "web-0", time.Now(), waited)
	if err := r.Demand(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(vols.asked) != 1 {
		t.Fatalf("LINSTOR reads: %v, want 1", vols.asked)
	}
	if got := b.AffinityOf(waited.Name); got != "[{linbit.com/hostname=n1}]" {
		t.Fatalf("PV repaired while the drift brake held: %s", got)
	}
	if !r.followUp.Load() {
		t.Fatal("held repairs did not ask for an early full read")
	}
	if r.opts.Brakes.seen != 0 {
		t.Fatalf("a partial read counted as a drift confirmation (seen %d)", r.opts.Brakes.seen)
	}
}

func TestRedecideUsesTheLastFullReadWhileItIsFresh(t *testing.T) {
	b := fakebed.New(t)
	pv := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})[0]
	r, _, full := demandBed(t, b)
	r.opts.SkipUnchanged = true
	// The last full read saw vol-a on n1, where the PV points: in sync.
	r.last = &decide.View{Nodes: r.last.Nodes, FetchedAt: time.Now(), RDs: map[string]*decide.RDView{"vol-a": fixture.RD("vol-a", 1, fixture.Res("n1"))}}
	r.NoteInputChange()
	if err := r.Redecide(context.Background()); err != nil {
		t.Fatal(err)
	}
	if full.reads != 0 {
		t.Fatalf("a PV change read LINSTOR in full %d times while the last read was fresh", full.reads)
	}
	if got := b.AffinityOf(pv.Name); got != "[{linbit.com/hostname=n1}]" {
		t.Fatalf("decided on something other than the last read: %s", got)
	}
	r.last.FetchedAt = time.Now().Add(-2 * r.period)
	if err := r.Redecide(context.Background()); err != nil {
		t.Fatal(err)
	}
	if full.reads != 1 {
		t.Fatalf("full reads = %d with the last read older than a period, want 1", full.reads)
	}
	if got := b.AffinityOf(pv.Name); got != "[{linbit.com/hostname=n2}]" {
		t.Fatalf("PV not repaired after the full read: %s", got)
	}
}

// histogramOf reads the blocked-pod repair histogram.
func histogramOf(t *testing.T, r *Reconciler) *dto.Histogram {
	t.Helper()
	m := &dto.Metric{}
	if err := r.metrics.BlockedPodRepair.Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram()
}

func TestRedecideDoesNotReadAgainBeforeAFailedReadsRetry(t *testing.T) {
	b := fakebed.New(t)
	b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	r, _, full := demandBed(t, b)
	r.last = nil // the first full read failed
	r.retryAt = time.Now().Add(time.Minute)
	for i := 0; i < 3; i++ {
		r.NoteInputChange()
		if err := r.Redecide(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if full.reads != 0 {
		t.Fatalf("%d full reads on PV changes while the failed read's retry was pending; want none", full.reads)
	}
	r.retryAt = time.Now().Add(-time.Second)
	if err := r.Redecide(context.Background()); err != nil {
		t.Fatal(err)
	}
	if full.reads != 1 {
		t.Fatalf("full reads = %d once the retry was due, want 1", full.reads)
	}
}

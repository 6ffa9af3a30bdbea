package controller

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fakebed"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/repair"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
)

func replaceActions(n int, target string) []decide.Action {
	out := make([]decide.Action, n)
	for i := range out {
		out[i] = decide.Action{Kind: decide.KindReplace, Reason: decide.ReasonDrifted, Name: fmt.Sprintf("pv-%03d", i),
			Affinity: decide.AffinityFor(decide.Topology{Segments: []decide.Segment{{decide.HostnameKey: target}}})}
	}
	return out
}

func TestDriftBrakeHoldsUntilTheSameDriftIsConfirmed(t *testing.T) {
	b := &Brakes{MaxDriftFraction: 0.5, MinDrifted: 5, DriftConfirmations: 3}
	now := time.Now()
	for cycle := 1; cycle <= 2; cycle++ {
		res := b.Apply(replaceActions(80, "n9"), 100, now)
		if !res.DriftHeld || len(res.Allowed) != 0 || len(res.Held) != 80 {
			t.Fatalf("cycle %d: held=%v allowed=%d, want all 80 held", cycle, res.DriftHeld, len(res.Allowed))
		}
		if res.Held[0].Reason != ReasonDriftBrake || res.Held[0].Kind != decide.KindNone {
			t.Fatalf("held action %+v", res.Held[0])
		}
	}
	// A different drift restarts the count.
	if res := b.Apply(replaceActions(80, "n8"), 100, now); !res.DriftHeld {
		t.Fatal("a new drift released the brake")
	}
	b.Apply(replaceActions(80, "n8"), 100, now)
	if res := b.Apply(replaceActions(80, "n8"), 100, now); res.DriftHeld || len(res.Allowed) != 80 {
		t.Fatalf("third consecutive sighting: held=%v allowed=%d, want released", res.DriftHeld, len(res.Allowed))
	}
}

func TestDriftBrakeLeavesNormalDriftAndFinishingWorkAlone(t *testing.T) {
	b := &Brakes{MaxDriftFraction: 0.5, MinDrifted: 5, DriftConfirmations: 3}
	now := time.Now()
	if res := b.Apply(replaceActions(40, "n9"), 100, now); res.DriftHeld || len(res.Allowed) != 40 {
		t.Fatalf("40%% drift held: %+v", res.DriftHeld)
	}
	if res := b.Apply(replaceActions(5, "n9"), 6, now); res.DriftHeld {
		t.Fatal("a handful of PVs held back")
	}
	finishing := append(replaceActions(80, "n7"), decide.Action{Kind: decide.KindRecreate, Name: "pv-saved"}, decide.Action{Kind: decide.KindClearSaved, Name: "pv-clear"})
	res := b.Apply(finishing, 100, now)
	if !res.DriftHeld || len(res.Allowed) != 2 {
		t.Fatalf("finishing actions must pass the drift brake: allowed %d", len(res.Allowed))
	}
}

func TestPartialDecisionsNeverConfirmADrift(t *testing.T) {
	b := &Brakes{MaxDriftFraction: 0.5, MinDrifted: 5, DriftConfirmations: 3}
	now := time.Now()
	// A few repairs for blocked pods, no drift brake holding: they go.
	if res := b.ApplyUnconfirmed(replaceActions(3, "n9"), 100, now); res.DriftHeld || len(res.Allowed) != 3 {
		t.Fatalf("small partial decision held: %+v", res)
	}
	// Too large a share on a partial read: held, and it does not count.
	if res := b.ApplyUnconfirmed(replaceActions(80, "n9"), 100, now); !res.DriftHeld || len(res.Allowed) != 0 {
		t.Fatalf("large partial decision allowed: %d", len(res.Allowed))
	}
	if b.seen != 0 {
		t.Fatalf("a partial decision counted as a sighting: seen %d", b.seen)
	}
	// A full read sees the drift: holding. Partial decisions in between,
	// even small ones, stay held and neither release nor confirm it.
	b.Apply(replaceActions(80, "n9"), 100, now)
	for i := 0; i < 5; i++ {
		if res := b.ApplyUnconfirmed(replaceActions(2, "n9"), 100, now); !res.DriftHeld || len(res.Allowed) != 0 {
			t.Fatalf("partial decision %d went ahead while the drift brake held", i)
		}
	}
	if b.seen != 1 || !b.driftHolding {
		t.Fatalf("partial decisions moved the brake: seen %d, holding %v", b.seen, b.driftHolding)
	}
	b.Apply(replaceActions(80, "n9"), 100, now)
	if res := b.Apply(replaceActions(80, "n9"), 100, now); res.DriftHeld {
		t.Fatal("three full reads of the same drift did not release the brake")
	}
	if res := b.ApplyUnconfirmed(replaceActions(2, "n9"), 100, now); res.DriftHeld {
		t.Fatal("partial decision held after the brake released")
	}
}

func TestForceReleasesDriftBrake(t *testing.T) {
	b := &Brakes{MaxDriftFraction: 0.5, MinDrifted: 5, DriftConfirmations: 3, Force: true}
	if res := b.Apply(replaceActions(90, "n9"), 100, time.Now()); res.DriftHeld || len(res.Allowed) != 90 {
		t.Fatal("--force did not release the brake")
	}
}

func TestRepairRateLimitIsASlidingMinute(t *testing.T) {
	b := &Brakes{MaxRepairsPerMinute: 60}
	start := time.Now()
	res := b.Apply(replaceActions(100, "n1"), 1000, start)
	if len(res.Allowed) != 60 || len(res.Held) != 40 || res.Held[0].Reason != ReasonRateLimited {
		t.Fatalf("allowed %d held %d, want 60 and 40", len(res.Allowed), len(res.Held))
	}
	if res := b.Apply(replaceActions(40, "n1"), 1000, start.Add(59*time.Second)); len(res.Allowed) != 0 {
		t.Fatalf("%d repairs allowed within the same minute", len(res.Allowed))
	}
	if res := b.Apply(replaceActions(40, "n1"), 1000, start.Add(61*time.Second)); len(res.Allowed) != 40 {
		t.Fatalf("%d repairs allowed a minute later, want 40", len(res.Allowed))
	}
	unlimited := &Brakes{}
	if res := unlimited.Apply(replaceActions(500, "n1"), 1000, start); len(res.Allowed) != 500 {
		t.Fatal("0 must mean no limit")
	}
}

func TestReconcilerBrakeWarnsOnHeldPVs(t *testing.T) {
	b := fakebed.New(t)
	var pvs []*corev1.PersistentVolume
	for i := 0; i < 8; i++ {
		pvs = append(pvs, b.AddVolume(fmt.Sprintf("vol-%d", i), 1, []string{"n2"}, []string{"n1"})...)
	}
	r, rec := newReconciler(b, nil)
	r.gate.brakes = &Brakes{MaxDriftFraction: 0.5, MinDrifted: 5, DriftConfirmations: 2}
	if err := r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, pv := range pvs {
		if got := b.AffinityOf(pv.Name); got != "[{linbit.com/hostname=n1}]" {
			t.Fatalf("pv %s repaired under the drift brake", pv.Name)
		}
	}
	if n := len(drain(rec)); n != 8 {
		t.Fatalf("%d events, want one warning per held PV", n)
	}
	if v := testutil.ToFloat64(r.metrics.BrakeHolding.WithLabelValues("drift")); v != 1 {
		t.Fatalf("brake_holding = %v", v)
	}
	// The second cycle confirms the drift; a fresh reconciler over the repaired
	// state must see nothing more to do.
	if err := r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, pv := range pvs {
		b.AssertHealed(pv, []string{"n2"})
	}
	if v := testutil.ToFloat64(r.metrics.BrakeHolding.WithLabelValues("drift")); v != 0 {
		t.Fatalf("brake_holding = %v after release", v)
	}
}

// The rate limit bounds the writes, not the decisions: a repair counts from
// when it ended, so the slow tail of one batch and the next batch a minute
// later never share a sliding minute beyond the bound.
func TestRepairRateLimitCountsARepairFromWhenItEnded(t *testing.T) {
	b := &Brakes{MaxRepairsPerMinute: 10}
	start := time.Now()
	first := b.Apply(replaceActions(30, "n1"), 1000, start)
	if len(first.Allowed) != 10 {
		t.Fatalf("allowed %d, want 10", len(first.Allowed))
	}
	for i, a := range first.Allowed {
		// The writes end over the 5 seconds after the cycle allowed them.
		b.RepairDone(a.Name, start.Add(time.Duration(i+1)*500*time.Millisecond), true)
	}
	if res := b.Apply(replaceActions(20, "n1"), 1000, start.Add(61*time.Second)); len(res.Allowed) != 2 {
		t.Fatalf("61 s after the cycle, 1 s after the 2nd write: %d allowed, want 2 (writes that ended more than a minute ago)", len(res.Allowed))
	}
	if res := b.Apply(replaceActions(20, "n1"), 1000, start.Add(66*time.Second)); len(res.Allowed) != 8 {
		t.Fatalf("66 s after the cycle: %d allowed, want the other 8", len(res.Allowed))
	}
	// A repair that never reports its end counts from when it was allowed,
	// and an end reported for a PV the limit did not let through is ignored.
	late := start.Add(10 * time.Minute)
	b.Apply(replaceActions(10, "n2"), 1000, late)
	b.RepairDone("no-such-pv", late.Add(30*time.Second), true)
	b.Apply(nil, 1000, late.Add(time.Second))
	b.RepairDone("pv-000", late.Add(50*time.Second), true) // too late: a later cycle came in between
	if res := b.Apply(replaceActions(10, "n3"), 1000, late.Add(61*time.Second)); len(res.Allowed) != 10 {
		t.Fatalf("%d allowed a minute after repairs that never reported an end, want 10", len(res.Allowed))
	}
}

// Through the reconciler: the repairs of a cycle report when they ended, so
// a cycle a minute after slow repairs still waits for them to age out.
func TestReconcilerRateLimitCountsFromTheEndOfEachRepair(t *testing.T) {
	b := fakebed.New(t)
	var pvs []*corev1.PersistentVolume
	for i := 0; i < 3; i++ {
		pvs = append(pvs, b.AddVolume(fmt.Sprintf("vol-%d", i), 1, []string{"n2"}, []string{"n1"})...)
	}
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	// Every step of a replace (six of them) takes 7 s of the fake clock.
	r, _ := newReconciler(b, func(repair.Step, string) error { mu.Lock(); now = now.Add(7 * time.Second); mu.Unlock(); return nil })
	r.now = clock
	r.gate.brakes = &Brakes{MaxRepairsPerMinute: 2}
	r.opts.Workers = 1
	start := clock()
	if err := r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.AssertHealed(pvs[0], []string{"n2"})
	b.AssertHealed(pvs[1], []string{"n2"})
	if got := b.AffinityOf(pvs[2].Name); got != "[{linbit.com/hostname=n1}]" {
		t.Fatalf("third PV repaired in the first cycle with a limit of 2 (%s)", got)
	}
	if elapsed := clock().Sub(start); elapsed <= time.Minute {
		t.Fatalf("fake clock advanced only %v; the test needs repairs that end more than a minute after their cycle", elapsed)
	}
	// More than a minute after the first cycle allowed both repairs, but
	// less than a minute after the second one ended.
	if err := r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := b.AffinityOf(pvs[2].Name); got != "[{linbit.com/hostname=n1}]" {
		t.Fatalf("third PV repaired less than a minute after the second repair ended (%s)", got)
	}
}

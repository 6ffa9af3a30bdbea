package controller

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fakebed"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/repair"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
)

// stubDriver answers the loop's questions to the CSI driver.
type stubDriver struct {
	ready   error
	missing map[string]bool
	checks  int
}

func (d *stubDriver) Ready(context.Context) error { return d.ready }

func (d *stubDriver) VolumeExists(_ context.Context, id string) (bool, string, error) {
	d.checks++
	return !d.missing[id], "", nil
}

func drain(rec *record.FakeRecorder) []string {
	var out []string
	for len(rec.Events) > 0 {
		out = append(out, <-rec.Events)
	}
	return out
}

func TestNoActionWhileDriverNotReady(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	r, _ := newReconciler(b, nil)
	d := &stubDriver{ready: errors.New("CSI driver is not ready")}
	r.driver, r.gate.driver = d, d
	for i := 0; i < 2; i++ {
		if err := r.Cycle(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.AffinityOf(pvs[0].Name); got != "[{linbit.com/hostname=n1}]" {
		t.Fatalf("PV changed while the driver was not ready: %s", got)
	}
	if n := testutil.ToFloat64(r.metrics.Reconciles.WithLabelValues("skipped")); n != 2 {
		t.Fatalf("skipped cycles = %v, want 2", n)
	}
	d.ready = nil
	if err := r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := b.AffinityOf(pvs[0].Name); got != "[{linbit.com/hostname=n2}]" {
		t.Fatalf("PV not repaired once the driver was ready: %s", got)
	}
	if d.checks != 1 {
		t.Fatalf("ControllerGetVolume asked %d times before the repair, want 1", d.checks)
	}
}

func TestOtherDriversPVsAreNeverTouched(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	pv := pvs[0].DeepCopy()
	pv.Spec.CSI.Driver = "other.csi.example.com"
	_, err := b.Kube.CoreV1().PersistentVolumes().Update(context.Background(), pv, metav1.UpdateOptions{})
	b.Must(err)
	r, rec := newReconciler(b, nil)
	if err := r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := b.AffinityOf(pv.Name); got != "[{linbit.com/hostname=n1}]" {
		t.Fatalf("foreign PV rewritten: %s", got)
	}
	if ev := drain(rec); len(ev) != 0 {
		t.Fatalf("events about a foreign PV: %q", ev)
	}
	if n := testutil.CollectAndCount(r.metrics.PVs); n != 0 {
		t.Fatalf("foreign PV counted in the pvs metric (%d series)", n)
	}
}

func TestNoRepairWhenDriverSaysVolumeIsGone(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	r, rec := newReconciler(b, nil)
	d := &stubDriver{missing: map[string]bool{"vol-a": true}}
	r.driver, r.gate.driver = d, d
	for i := 0; i < 3; i++ {
		if err := r.Cycle(context.Background()); (err == nil) != (i > 0) {
			t.Fatalf("cycle %d: err = %v; want the refused repair to fail the first cycle, then wait in backoff", i, err)
		}
	}
	if got := b.AffinityOf(pvs[0].Name); got != "[{linbit.com/hostname=n1}]" {
		t.Fatalf("PV rewritten although the driver says the volume does not exist: %s", got)
	}
	ev := drain(rec)
	if len(ev) != 1 || !strings.Contains(ev[0], "Warning "+EventCannotHandle) || !strings.Contains(ev[0], "does not exist") {
		t.Fatalf("want one warning event over three cycles, got %q", ev)
	}
	if s := b.SavedStates(); len(s) != 0 {
		t.Fatalf("saved state written for a refused repair")
	}
}

func TestProblemWarnedOncePerPV(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	pv := pvs[0].DeepCopy()
	pv.Spec.CSI.VolumeAttributes[decide.VolumeContextPolicyKey] = "fromSame: [not-a-list-of-rules]"
	_, err := b.Kube.CoreV1().PersistentVolumes().Update(context.Background(), pv, metav1.UpdateOptions{})
	b.Must(err)
	r, rec := newReconciler(b, nil)
	for i := 0; i < 3; i++ {
		if err := r.Cycle(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	ev := drain(rec)
	if len(ev) != 1 || !strings.Contains(ev[0], "Warning "+EventCannotHandle) || !strings.Contains(ev[0], "remote access policy") {
		t.Fatalf("want exactly one warning about the policy over three cycles, got %q", ev)
	}
	if n := testutil.ToFloat64(r.metrics.PVs.WithLabelValues("skipped", string(decide.ReasonInvalidPolicy))); n != 1 {
		t.Fatalf("pvs{skipped,invalid-policy} = %v, want 1", n)
	}
}

// TestStaleCacheDoesNotRepairTwice: right after a repair the informer may still
// show the old PV; the loop must wait for it rather than replace again.
func TestStaleCacheDoesNotRepairTwice(t *testing.T) {
	b := fakebed.New(t)
	b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})
	r, _ := newReconciler(b, nil) // its cache is a snapshot taken before the repair
	if err := r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, err := b.Linstor.Fetch(context.Background())
	b.Must(err)
	actions, err := planned(r, v)
	b.Must(err)
	if len(actions) != 0 {
		t.Fatalf("stale cache led to a second action: %s %s", actions[0].Kind, actions[0].Message)
	}
	if n := testutil.ToFloat64(r.metrics.PVs.WithLabelValues("skipped", "awaiting-cache")); n != 1 {
		t.Fatalf("pvs{skipped,awaiting-cache} = %v, want 1", n)
	}
}

// A SIGTERM (the loop's context ending) in the middle of a replace lets the
// replace finish within the grace period: the PV is not left to the next
// leader.
func TestStopLetsTheReplaceUnderWayFinish(t *testing.T) {
	b := fakebed.New(t)
	pv := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})[0]
	ctx, stop := context.WithCancel(context.Background())
	r, _ := newReconciler(b, func(s repair.Step, _ string) error {
		if s == repair.StepSaveState {
			stop() // told to stop right after the saved state was written
		}
		return nil
	})
	r.exec.Method = repair.MethodRecreate
	if err := r.Cycle(ctx); err != nil {
		t.Fatalf("cycle: %v", err)
	}
	if got := b.AffinityOf(pv.Name); got != "[{linbit.com/hostname=n2}]" {
		t.Fatalf("PV after a stop mid-replace: %s, want the replace finished", got)
	}
	if left := b.SavedStates(); len(left) != 0 {
		t.Fatalf("saved state left after the replace finished: %v", left)
	}
}

// Past the grace period the replace is cut short, leaving its saved state
// for the next leader, and no further action starts.
func TestStopCutsShortAfterTheGracePeriod(t *testing.T) {
	b := fakebed.New(t)
	pv := b.AddVolume("vol-a", 1, []string{"n2"}, []string{"n1"})[0]
	other := b.AddVolume("vol-b", 1, []string{"n3"}, []string{"n1"})[0]
	ctx, stop := context.WithCancel(context.Background())
	r, _ := newReconciler(b, func(s repair.Step, name string) error {
		if s == repair.StepSaveState && name == pv.Name {
			stop()
			time.Sleep(200 * time.Millisecond) // longer than the grace below
		}
		return nil
	})
	r.opts.Workers = 1
	r.opts.ShutdownGrace = 20 * time.Millisecond
	r.exec.Method = repair.MethodRecreate
	_ = r.Cycle(ctx)
	if left := b.SavedStates(); left[pv.Name] == nil {
		t.Fatalf("saved state of the cut-short replace: %v, want it kept for the next leader", left)
	}
	if got := b.AffinityOf(other.Name); got != "[{linbit.com/hostname=n1}]" {
		t.Fatalf("a repair started after the stop: %s", got)
	}
}

package controller

import (
	"context"
	"slices"
	"testing"
	"time"

	lapi "github.com/LINBIT/golinstor/client"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fakebed"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
)

// countingLister counts how often the loop lists PVs, i.e. decides.
type countingLister struct {
	corelisters.PersistentVolumeLister
	lists int
}

func (c *countingLister) List(sel labels.Selector) ([]*corev1.PersistentVolume, error) {
	c.lists++
	return c.PersistentVolumeLister.List(sel)
}

// skipUnchangedLoop is a reconciler with SkipUnchanged on the bed's bulk
// LINSTOR, and a cycle that checks how often it decided in all.
func skipUnchangedLoop(b *fakebed.Bed) (*Reconciler, func(wantLists int, what string)) {
	r, _ := newReconciler(b, nil)
	bulk, _ := b.BulkLinstor(0)
	r.linstor, r.opts.SkipUnchanged = bulk, true
	lister := &countingLister{PersistentVolumeLister: r.pvs}
	r.pvs = lister
	return r, func(wantLists int, what string) {
		b.T.Helper()
		b.Must(r.Cycle(context.Background()))
		if lister.lists != wantLists {
			b.T.Fatalf("%s: decided %d times in all, want %d", what, lister.lists, wantLists)
		}
	}
}

// With SkipUnchanged, a cycle that would decide on exactly the inputs of a
// quiet cycle skips deciding; any PV/StorageClass change or LINSTOR change
// makes it decide again, and a drift is repaired.
func TestSkipUnchangedDecidesOnlyWhenSomethingChanged(t *testing.T) {
	b := fakebed.New(t)
	pvs := b.AddVolume("vol-a", 1, []string{"n1"}, []string{"n1"})
	r, cycle := skipUnchangedLoop(b)
	ctx := context.Background()
	cycle(1, "first cycle")
	cycle(1, "nothing changed")
	cycle(1, "still nothing changed")
	r.NoteInputChange()
	cycle(2, "a PV changed")
	cycle(2, "nothing changed since")

	// A replica is added: LINSTOR's answer changes, so the loop decides and repairs.
	b.Must(b.LC.Resources.Create(ctx, lapi.ResourceCreate{Resource: lapi.Resource{Name: "vol-a", NodeName: "n2"}}))
	cycle(3, "a replica was added")
	if got := b.AffinityOf(pvs[0].Name); got != "[{linbit.com/hostname=n1} {linbit.com/hostname=n2}]" {
		t.Fatalf("moved volume not repaired: %s", got)
	}
	// It wrote the PV: until the cache shows it, cycles decide every time.
	cycle(4, "awaiting the cache")
}

// SkipUnchanged holds against a LINSTOR whose answers never repeat: the
// loop decides once while only LINSTOR's running state changes, and again
// when a replica moves. The replica left behind is in LINSTOR's deletion
// window (DRBD_DELETE) when the loop sees the move; the PV goes straight to
// the new node, in one repair.
func TestSkipUnchangedHoldsWhileOnlyLinstorsRunningStateChanges(t *testing.T) {
	b, sim := fakebed.OnSim(t, linstorsim.Options{Realistic: true, DeleteWindow: time.Hour})
	pvs := b.AddVolume("vol-a", 1, []string{"n1"}, []string{"n1"})
	_, cycle := skipUnchangedLoop(b)
	cycle(1, "first cycle")
	for i := 0; i < 3; i++ {
		cycle(1, "only LINSTOR's running state changed")
	}
	b.Must(sim.MoveReplica("vol-a", "n1", "n2"))
	cycle(2, "a replica moved")
	if got := b.AffinityOf(pvs[0].Name); got != "[{linbit.com/hostname=n2}]" {
		t.Fatalf("moved volume: affinity %s, want the new node only", got)
	}
	reps, err := sim.Replicas("vol-a")
	b.Must(err)
	if len(reps) != 2 || !slices.Contains(reps[0].Flags, "DRBD_DELETE") {
		t.Fatalf("the old replica should still be in its deletion window: %+v", reps)
	}
}

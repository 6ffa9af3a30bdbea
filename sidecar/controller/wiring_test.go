package controller

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
)

// fakeOthers is an OtherControllers whose answer the test changes.
type fakeOthers struct {
	mu      sync.Mutex
	active  bool
	changed chan struct{}
}

func (f *fakeOthers) Active() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active, "upstream"
}

func (f *fakeOthers) Changed() <-chan struct{} { return f.changed }

func (f *fakeOthers) HasSynced() bool { return true }

// woken waits for ch to fire, up to a few seconds.
func woken(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// quiet drains ch and reports whether it stays silent for a moment.
func quiet(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return false
	case <-time.After(200 * time.Millisecond):
		return true
	}
}

// The controller's constructor registers every event handler: a change of
// a PV of its driver, of a StorageClass or of the other controllers' answer
// makes the loop decide anew and wakes it; a PV of another driver does
// not; a pod blocked by a PV's node affinity sends it to the pod's volumes.
func TestControllerRegistersItsOwnEventHandlers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kube := fake.NewClientset()
	others := &fakeOthers{changed: make(chan struct{}, 1)}
	src := KubeSources(kube, true)
	src.Others = others
	c := NewController(src, Options{Config: decide.Config{DriverName: fixture.Driver}}, nil, nil, nil, &record.FakeRecorder{}, NewMetrics())
	if c.rec.opts.Blocked == nil || c.rec.opts.OtherController == nil {
		t.Fatal("the loop was not given the blocked pods or the other controllers")
	}
	c.Start(ctx)
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("caches did not sync")
	}
	if !c.Synced() {
		t.Fatal("Synced = false after WaitForCacheSync")
	}
	<-c.wake // the first lists
	gen := c.rec.inputGen.Load()

	step := func(what string, change func() error, wantWake bool) {
		t.Helper()
		if err := change(); err != nil {
			t.Fatal(err)
		}
		before := gen
		if wantWake {
			if !woken(c.wake) {
				t.Fatalf("%s: the loop was not woken", what)
			}
		} else if !quiet(c.wake) {
			t.Fatalf("%s: the loop was woken", what)
		}
		gen = c.rec.inputGen.Load()
		if changed := gen != before; changed != wantWake {
			t.Fatalf("%s: input change noted = %v, want %v", what, changed, wantWake)
		}
	}
	step("PV of another driver", func() error {
		_, err := kube.CoreV1().PersistentVolumes().Create(ctx, fixture.PV("foreign", "pvc-f", fixture.WithDriver("other.csi.example.com")), metav1.CreateOptions{})
		for deadline := time.Now().Add(5 * time.Second); err == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, cached, _ := c.pvs.Indexer().GetByKey("foreign"); cached {
				return nil
			}
		}
		if err == nil {
			t.Fatal("the PV of another driver never reached the cache")
		}
		return err
	}, false)
	step("PV of the driver", func() error {
		_, err := kube.CoreV1().PersistentVolumes().Create(ctx, fixture.PV("ours", "pvc-o"), metav1.CreateOptions{})
		return err
	}, true)
	step("PV of the driver deleted", func() error {
		return kube.CoreV1().PersistentVolumes().Delete(ctx, "ours", metav1.DeleteOptions{})
	}, true)
	step("StorageClass", func() error {
		_, err := kube.StorageV1().StorageClasses().Create(ctx, fixture.SC("any", nil), metav1.CreateOptions{})
		return err
	}, true)
	step("other controllers' answer", func() error {
		others.mu.Lock()
		others.active = true
		others.mu.Unlock()
		others.changed <- struct{}{}
		return nil
	}, true)

	if _, err := kube.CoreV1().Pods("ns").Create(ctx, blockedPodAt("db-0", time.Now(), msgAffinity, "data-db-0"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !woken(c.demand) {
		t.Fatal("a pod blocked by a PV's node affinity did not send the loop to its volumes")
	}
	if _, err := kube.CoreV1().Pods("ns").Create(ctx, blockedPodAt("web-0", time.Now(), msgCPU, "data-web-0"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !quiet(c.demand) {
		t.Fatal("a pod waiting for CPU sent the loop to its volumes")
	}
}

// check decides on one list of the same sources, through the loop's own
// list-and-decide step: the same PVs, StorageClasses and decisions.
func TestSnapshotDecidesAsTheLoop(t *testing.T) {
	ctx := context.Background()
	sc := fixture.SC("local", map[string]string{"linstor.csi.linbit.com/allowRemoteVolumeAccess": "false"})
	sc.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	kube := fake.NewClientset(
		fixture.PV("a", "pvc-a", fixture.WithSC("local"), fixture.WithAffinity(fixture.AffinityOf(fixture.Host("n1")))),
		fixture.PV("b", "pvc-b", fixture.WithSC("local"), fixture.WithAffinity(fixture.AffinityOf(fixture.Host("n1")))),
		fixture.PV("foreign", "pvc-f", fixture.WithDriver("other.csi.example.com")),
		sc,
	)
	view := &decide.View{Nodes: map[string]decide.Segment{"n1": fixture.Host("n1"), "n2": fixture.Host("n2")}, RDs: map[string]*decide.RDView{
		"pvc-a": fixture.RD("pvc-a", 1, fixture.Res("n1")),
		"pvc-b": fixture.RD("pvc-b", 1, fixture.Res("n2")),
	}}
	cfg := decide.Config{DriverName: fixture.Driver, DefaultPolicy: decide.PolicyAnywhere}

	pvs, scs, err := Snapshot(ctx, KubeSources(kube, false))
	if err != nil {
		t.Fatal(err)
	}
	got, total, err := DecideListed(pvs, scs, view, cfg, fixture.Now)
	if err != nil {
		t.Fatal(err)
	}
	if total != 2 || len(got) != 2 {
		t.Fatalf("decided %d of %d PVs, want 2 of 2: %+v", len(got), total, got)
	}
	if got[0].Name != "a" || got[0].Kind != decide.KindNone || got[1].Name != "b" || got[1].Kind == decide.KindNone {
		t.Errorf("decisions %+v, want a in sync and b to be rewritten", got)
	}
	if kept, _ := scs.Get("local"); kept == nil || kept.ManagedFields != nil {
		t.Errorf("StorageClass kept as %+v, want it found without managedFields", kept)
	}

	c := NewController(KubeSources(kube, false), Options{Config: cfg}, nil, nil, nil, &record.FakeRecorder{}, NewMetrics())
	c.rec.now = func() time.Time { return fixture.Now }
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.Start(cctx)
	if !c.WaitForCacheSync(cctx) {
		t.Fatal("caches did not sync")
	}
	loop, err := planned(c.rec, view)
	if err != nil {
		t.Fatal(err)
	}
	if len(loop) != 1 || loop[0].Name != "b" || loop[0].Kind != got[1].Kind {
		t.Errorf("the loop plans %+v, check decided %+v", loop, got)
	}
}

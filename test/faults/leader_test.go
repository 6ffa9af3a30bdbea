package faults

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// Leader election timings of this test: shorter than deployed (15s/10s/5s)
// to keep failovers quick, long enough for a loaded 2-core machine.
var leaderArgs = []string{
	"--workers=2",
	"--leader-election-lease-duration=8s",
	"--leader-election-renew-deadline=6s",
	"--leader-election-retry-period=2s",
}

// leasePrefix starts the sidecar's Lease name (csi-lib-utils sanitizes the
// rest, the driver name).
const leasePrefix = "linstor-affinity-sidecar-"

// TestLeaderKilledDuringRepairs runs two sidecars with leader election, as
// two CSI controller replicas do, and kills the leader with SIGKILL while it
// repairs. The standby takes over and finishes; the killed one comes back
// as standby; then the roles swap. Throughout, at most one sidecar reports
// itself leader, only the Lease holder logs actions, and every moved PV is
// recreated exactly once (counted from the API server's watch): no repair
// done twice, none lost. Fast subset: one kill; full: six.
func TestLeaderKilledDuringRepairs(t *testing.T) {
	began := time.Now()
	b, _ := startBed(t, testbed.Options{LeaderElection: true, SidecarArgs: leaderArgs})
	ctx := testContext(t, 60*time.Minute)
	w := &world{b: b}
	createClasses(ctx, t, b)
	vols := provision(ctx, t, w, "le", classStrict, "n1", 4)
	vols = append(vols, provision(ctx, t, w, "le2", classStrict2, "n1", 1)...)
	step(t, began, "%d volumes provisioned", len(vols))

	wctx, cancel := within(ctx)
	second, err := b.StartSidecarReplica(wctx, "linstor-csi-controller-1")
	cancel()
	must(t, err)
	a := &instance{pod: testbed.ControllerPodName, proc: b.Sidecar, url: b.SidecarURL()}
	s := &instance{pod: second.PodName, proc: second.Process, url: second.URL()}
	recreates := countRecreates(ctx, t, b)
	gauges := watchLeaderGauges(ctx, a, s)
	leader, standby := a, s
	w.acting = leader

	kills := rounds(1, 6)
	crashes, repaired, lost := 0, 0, 0
	wantRecreates := map[string]int{}
	defer func() { totals.add(kills, crashes, repaired, lost, 0) }()
	for round := range kills {
		assertLeader(ctx, t, b, leader, standby)
		slowStateWrites(t, b, 300*time.Millisecond)
		log := testbed.NewLogFollower(leader.proc.LogPath())
		_, err := log.Next()
		must(t, err)
		moved := w.move(t, vols)
		for _, v := range vols {
			wantRecreates[v.pv]++
		}
		// Kill at a different point each round: with two workers the five
		// repairs run staggered, so after 0..3 finished ones the others are
		// somewhere between their first and last step.
		finished := round % 4
		waitRepairs(ctx, t, log, finished)
		must(t, leader.proc.Kill())
		killedAt := time.Now()
		crashes++
		step(t, began, "round %d: leader %s killed with SIGKILL during repairs, after %d had finished", round+1, leader.pod, finished)
		b.Sim.ClearFaults()

		leader, standby = standby, leader
		w.acting = leader
		wctx, cancel := within(ctx)
		must(t, testbed.Poll(wctx, leader.pod+" leading", func(ctx context.Context) (bool, string) {
			v, err := leaderGauge(ctx, leader.url)
			if err != nil {
				return false, err.Error()
			}
			return v == 1, fmt.Sprintf("leader gauge %v", v)
		}))
		cancel()
		lost += w.assertSettled(ctx, t)
		assertActedOnlyAsLeader(t, leader, killedAt)
		if t.Failed() {
			t.Fatalf("round %d: not settled after the failover", round+1)
		}
		repaired += moved
		wctx, cancel = within(ctx)
		must(t, standby.proc.Restart(wctx))
		cancel()
		step(t, began, "round %d: %s took over and finished; %d PVs repaired; %s back as standby", round+1, leader.pod, moved, standby.pod)
	}
	assertLeader(ctx, t, b, leader, standby)
	if n := gauges.stop(); n > 0 {
		t.Errorf("%d samples saw both sidecars report leader=1", n)
	} else if gauges.samples() == 0 {
		t.Error("no leader gauge samples taken")
	}
	got := recreates.stop()
	for _, v := range vols {
		if got[v.pv] != wantRecreates[v.pv] {
			t.Errorf("PV %s was recreated %d times for %d moves", v.pv, got[v.pv], wantRecreates[v.pv])
		}
	}
	if lost != 0 {
		t.Errorf("%d PVs lost", lost)
	}
}

// waitRepairs waits until the sidecar whose log is followed acts on a PV and
// has finished n repairs since the follower's position.
func waitRepairs(ctx context.Context, t *testing.T, log *testbed.LogFollower, n int) {
	t.Helper()
	wctx, cancel := within(ctx)
	defer cancel()
	acting, updated := 0, 0
	must(t, testbed.Poll(wctx, fmt.Sprintf("sidecar acting, %d repairs finished", n), func(context.Context) (bool, string) {
		lines, err := log.Next()
		if err != nil {
			return false, err.Error()
		}
		for _, l := range lines {
			switch l.Msg {
			case "Acting on PV":
				acting++
			case "Updated PV affinity":
				updated++
			}
		}
		return acting > 0 && updated >= n, fmt.Sprintf("%d acting, %d finished", acting, updated)
	}))
}

// assertLeader waits until the Lease names leader and checks that leader
// reports leader=1 and standby (alive, ready) reports 0.
func assertLeader(ctx context.Context, t *testing.T, b *testbed.Bed, leader, standby *instance) {
	t.Helper()
	wctx, cancel := within(ctx)
	defer cancel()
	must(t, testbed.Poll(wctx, "Lease held by "+leader.pod+", standby "+standby.pod+" ready", func(ctx context.Context) (bool, string) {
		leases, err := b.Kube.CoordinationV1().Leases(testbed.ControllerNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var holders []string
		for _, l := range leases.Items {
			if strings.HasPrefix(l.Name, leasePrefix) && l.Spec.HolderIdentity != nil {
				holders = append(holders, *l.Spec.HolderIdentity)
			}
		}
		if len(holders) != 1 {
			return false, fmt.Sprintf("sidecar Lease holders %q, want exactly one Lease", holders)
		}
		holder := holders[0]
		if !strings.HasPrefix(holder, leader.pod) {
			return false, "holder " + holder
		}
		lv, err := leaderGauge(ctx, leader.url)
		if err != nil || lv != 1 {
			return false, fmt.Sprintf("leader gauge of %s %v (%v)", leader.pod, lv, err)
		}
		sv, err := leaderGauge(ctx, standby.url)
		if err != nil || sv != 0 {
			return false, fmt.Sprintf("leader gauge of standby %s %v (%v)", standby.pod, sv, err)
		}
		// Metrics are served from process start now, before the caches
		// synced: the gauge alone does not say the standby is ready.
		if err := readyz(ctx, standby.url); err != nil {
			return false, fmt.Sprintf("standby %s: %v", standby.pod, err)
		}
		return true, ""
	}))
	assertHealthy(wctx, t, standby.url, standby.proc.Exited())
	assertNoDataRace(t, standby.proc.LogPath())
}

// assertActedOnlyAsLeader checks the new leader's log: it logged no action
// before it took the Lease, and took it only after the old leader died.
func assertActedOnlyAsLeader(t *testing.T, leader *instance, oldLeaderKilled time.Time) {
	t.Helper()
	lines, err := testbed.NewLogFollower(leader.proc.LogPath()).Next()
	must(t, err)
	// Only the current run: from its last "Starting" line on.
	start := 0
	for i, l := range lines {
		if l.Msg == "Starting" {
			start = i
		}
	}
	leading := false
	for _, l := range lines[start:] {
		switch l.Msg {
		case "Acting as leader":
			leading = true
			if l.Time.Before(oldLeaderKilled.Add(-time.Second)) { // log times have microseconds; allow clock rounding
				t.Errorf("%s took the lead at %v, before the old leader was killed at %v", leader.pod, l.Time, oldLeaderKilled)
			}
		case "Acting on PV":
			if !leading {
				t.Errorf("%s acted on PV %s while standing by: %s", leader.pod, l.Fields["pv"], l.Raw)
			}
		}
	}
	if !leading {
		t.Errorf("%s never logged taking the lead", leader.pod)
	}
}

func leaderGauge(ctx context.Context, base string) (float64, error) {
	m, err := testbed.ScrapeMetrics(ctx, base+"/metrics")
	if err != nil {
		return 0, err
	}
	return m.Sum("linstor_affinity_sidecar_leader", nil), nil
}

// gaugeWatch samples both sidecars' leader gauges until stopped and counts
// samples in which both said 1. A dead or restarting sidecar counts as 0.
type gaugeWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	both   int
	taken  int
}

func watchLeaderGauges(ctx context.Context, insts ...*instance) *gaugeWatch {
	ctx, cancel := context.WithCancel(ctx)
	g := &gaugeWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(g.done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			leaders := 0
			for _, in := range insts {
				cctx, c := context.WithTimeout(ctx, 2*time.Second)
				if v, err := leaderGauge(cctx, in.url); err == nil && v == 1 {
					leaders++
				}
				c()
			}
			g.mu.Lock()
			g.taken++
			if leaders > 1 {
				g.both++
			}
			g.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return g
}

func (g *gaugeWatch) stop() int {
	g.cancel()
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.both
}

func (g *gaugeWatch) samples() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.taken
}

// recreateCounter counts, per PV name, how often a PV object was deleted
// for good, from a watch on the API server: each recreate deletes the old
// object once.
type recreateCounter struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	counts map[string]int
}

func countRecreates(ctx context.Context, t *testing.T, b *testbed.Bed) *recreateCounter {
	t.Helper()
	list, err := b.Kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	must(t, err)
	ctx, cancel := context.WithCancel(ctx)
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return b.Kube.CoreV1().PersistentVolumes().Watch(ctx, o)
		},
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c := &recreateCounter{cancel: cancel, done: make(chan struct{}), counts: map[string]int{}}
	go func() {
		defer close(c.done)
		defer rw.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-rw.ResultChan():
				if !ok {
					return
				}
				if pv, isPV := ev.Object.(*corev1.PersistentVolume); isPV && ev.Type == watch.Deleted {
					c.mu.Lock()
					c.counts[pv.Name]++
					c.mu.Unlock()
				}
			}
		}
	}()
	return c
}

func (c *recreateCounter) stop() map[string]int {
	// Let the watch deliver what the API server already sent.
	time.Sleep(time.Second)
	c.cancel()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts
}

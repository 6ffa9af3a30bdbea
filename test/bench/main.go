// Command bench measures the sidecar on the local test bed at scale: N static
// PVs on 100 LINSTOR nodes (real etcd, kube-apiserver and kube-scheduler,
// the LINSTOR REST simulator, the sidecar as its own process with its
// default flags), and writes bench-results/REPORT.md, a JSON file of the figures and
// a PNG plot of the time from a replica move to the blocked pod scheduled,
// against N.
//
//	go run ./test/bench                              # N = 1000, 10000 and 50000, as make bench does
//	go run ./test/bench -n 1000 -k 20 -quiet 4m      # a quick look
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

type options struct {
	ns           []int
	k            int
	moveInterval time.Duration
	quiet        time.Duration
	replay       time.Duration
	before       bool
	beforeMaxN   int
	beforeQuiet  time.Duration
	burst        int
	burstMinN    int
	realistic    bool
	out          string
	logDir       string
	profile      bool
	goBench      bool
}

func main() {
	var o options
	var ns string
	flag.StringVar(&ns, "n", "1000,10000,50000", "Comma-separated numbers of PVs, one bed each.")
	flag.IntVar(&o.k, "k", 100, "Replica moves with a pending pod per sidecar configuration (a), and moves without a pod (c).")
	flag.DurationVar(&o.moveInterval, "move-interval", 1500*time.Millisecond, "Pause between two moves with a pod (a).")
	flag.DurationVar(&o.quiet, "quiet", 5*time.Minute, "Quiet window (b, d): the sidecar is measured over the whole periods of its full read that fit in it, at least 2.")
	flag.DurationVar(&o.replay, "replay", 2*time.Minute, "Window of the replay of upstream's request schedule (b); the schedule repeats every minute.")
	flag.BoolVar(&o.before, "before", true, "Also measure (a) and (b) with 3-second polling (--reconcile-rate=3s --repair-blocked-pods=false), the row \"before: 3 s polling\".")
	flag.IntVar(&o.beforeMaxN, "before-max-n", 10000, "Measure \"before: 3 s polling\" only for N up to this.")
	flag.DurationVar(&o.beforeQuiet, "before-quiet", time.Minute, "Quiet window of \"before: 3 s polling\".")
	flag.IntVar(&o.burst, "burst", 1000, "PVs to drift at once by evacuating nodes (e).")
	flag.IntVar(&o.burstMinN, "burst-min-n", 5000, "Run the burst only for N at least this (smaller beds have too few volumes).")
	flag.BoolVar(&o.realistic, "realistic", true, "Run the LINSTOR simulator in its realistic mode (answers that change between requests, deletion windows; see test/linstorsim/README.md).")
	flag.StringVar(&o.out, "out", "bench-results", "Directory for REPORT.md, results.json and pod-scheduled.png (relative to the repository root).")
	flag.StringVar(&o.logDir, "log-dir", "", "Keep component logs here; empty: a temp dir, removed.")
	flag.BoolVar(&o.profile, "profile", true, "Take CPU profiles of the sidecar (a quiet full read, the in-place burst) and a heap profile for the report.")
	flag.BoolVar(&o.goBench, "gobench", true, "Run the Go benchmarks of the packages under sidecar/ first and put them in the report.")
	flag.Parse()
	for _, f := range strings.Split(ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bench: bad -n %q\n", f)
			os.Exit(2)
		}
		o.ns = append(o.ns, n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, o options) error {
	began := time.Now()
	root, err := cluster.RepoRoot()
	if err != nil {
		return err
	}
	out := o.out
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) //nolint:errcheck // best effort
	logf("building the sidecar")
	binary, err := testbed.BuildSidecarWith(ctx, tmp, testbed.BuildOptions{Release: true})
	if err != nil {
		return err
	}
	period, err := flagDefault(ctx, binary, "reconcile-rate")
	if err != nil {
		return err
	}
	rep := report{Machine: machine(), Options: o.describe(), Started: began.UTC(), Period: period.String()}
	if o.goBench {
		logf("running the Go benchmarks of the packages under sidecar/")
		cmd := exec.CommandContext(ctx, "go", "test", "-run=^$", "-bench=.", "-benchmem", "./sidecar/...")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("go test -bench: %v\n%s", err, out)
		}
		rep.GoBench = keepBenchLines(string(out))
		fmt.Fprint(os.Stderr, rep.GoBench)
	}
	for _, n := range o.ns {
		r, err := runN(ctx, o, n, binary, tmp, period)
		if err != nil {
			return fmt.Errorf("n=%d: %w", n, err)
		}
		rep.Runs = append(rep.Runs, r)
	}
	rep.Took = time.Since(began).Round(time.Second).String()
	if err := writePlot(filepath.Join(out, "pod-scheduled.png"), rep.Runs); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	raw, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "results.json"), append(raw, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "REPORT.md"), []byte(rep.markdown()), 0o644); err != nil {
		return err
	}
	logf("wrote %s/REPORT.md, results.json, pod-scheduled.png in %v", out, time.Since(began).Round(time.Second))
	return nil
}

// beforeArgs are the flags of "before: 3 s polling": the sidecar as it was
// before demand-driven repair.
var beforeArgs = []string{"--reconcile-rate=3s", "--repair-blocked-pods=false"}

const beforePeriod = 3 * time.Second

// runN runs every measurement on one bed of n PVs. period is the sidecar's
// default --reconcile-rate.
func runN(ctx context.Context, o options, n int, binary, tmp string, period time.Duration) (runResult, error) {
	r := runResult{N: n, Quiet: map[string]quietResult{}, Pods: map[string]podResult{}, Burst: map[string]burstResult{}, Phases: map[string]float64{}}
	logDir := ""
	if o.logDir != "" {
		logDir = filepath.Join(o.logDir, fmt.Sprintf("n%d", n))
	}
	sctx, cancel := context.WithTimeout(ctx, 45*time.Minute)
	defer cancel()
	phaseStart := time.Now()
	phase := func(name string) {
		r.Phases[name] += time.Since(phaseStart).Seconds()
		logf("N=%d: %s took %v", n, name, time.Since(phaseStart).Round(time.Second))
		phaseStart = time.Now()
	}
	before := o.before && n <= o.beforeMaxN
	claims := o.k + o.k/5 + 5
	if before {
		claims += o.k
	}
	r.Claims = min(claims, n/2)
	b, err := startBed(sctx, n, r.Claims, o.realistic, binary, logDir, logf)
	if err != nil {
		return r, err
	}
	defer func() {
		if err := b.stop(); err != nil {
			logf("%v", err)
		}
	}()
	r.Realistic = b.realistic
	phase("setup")

	// (b) upstream's schedule, before any sidecar runs.
	if r.Replay, err = replayUpstream(sctx, b.sim, o.replay); err != nil {
		return r, err
	}
	logf("N=%d: replay of upstream's schedule: %.0f requests, %.1f MB per minute", n, r.Replay.requestsPerMinute(), r.Replay.bytesPerMinute()/1e6)
	phase("replay")

	// Startup: process start to the end of the first complete cycle, with
	// every PV in sync (the sidecar must still read and decide all of them).
	s, err := b.startSidecar(sctx, "sidecar-default")
	if err != nil {
		return r, err
	}
	first, err := s.firstReconcile(sctx)
	if err != nil {
		return r, err
	}
	r.StartupSeconds = first.Sub(s.started).Seconds()
	logf("N=%d: first complete reconcile %.2fs after process start", n, r.StartupSeconds)

	// (b), (d): the quiet window, with the API server's PV latency as the
	// baseline of the burst's, and a CPU profile of its last period.
	profiled := make(chan error, 1)
	profiled <- nil
	lastPeriod := func() {
		if !o.profile {
			return
		}
		<-profiled
		go func() {
			var err error
			r.QuietProfile, err = b.profile(sctx, int((period+5*time.Second)/time.Second), filepath.Join(tmp, fmt.Sprintf("quiet-%d.pprof", n)), nil)
			profiled <- err
		}()
	}
	r.APIQuiet, err = b.pvLatency(sctx, func() error {
		q, err := b.measureQuiet(sctx, o.quiet, period, lastPeriod)
		r.Quiet["default"] = q
		return err
	})
	if err != nil {
		return r, err
	}
	if err := <-profiled; err != nil {
		return r, err
	}
	logf("N=%d: quiet %+v", n, r.Quiet["default"])
	if o.profile {
		if r.QuietHeap, err = b.heapTop(sctx, filepath.Join(tmp, fmt.Sprintf("heap-%d.pprof", n))); err != nil {
			return r, err
		}
	}
	phase("quiet")

	// (a) and (c) at the same time: moves with a pod, and moves without one
	// spread over one period of the full read that repairs them.
	usedClaims, usedMoves := map[string]bool{}, map[string]bool{}
	var wg sync.WaitGroup
	var uerr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.Unattended, uerr = b.unattended(sctx, o.k, period/time.Duration(max(o.k, 1)), period+time.Minute, usedMoves)
	}()
	r.Pods["default"], err = b.blockedPods(sctx, o.k, o.moveInterval, period+time.Minute, usedClaims, "pod")
	wg.Wait()
	if err != nil {
		return r, err
	}
	if uerr != nil {
		return r, uerr
	}
	logf("N=%d: pod scheduled after a move %+v; unattended volumes %+v", n, r.Pods["default"], r.Unattended)
	phase("pods and unattended moves")

	if before {
		if err := b.stopSidecar(); err != nil {
			return r, err
		}
		if s, err = b.startSidecar(sctx, "sidecar-before", beforeArgs...); err != nil {
			return r, err
		}
		if _, err := s.firstReconcile(sctx); err != nil {
			return r, err
		}
		if r.Quiet["before"], err = b.measureQuiet(sctx, o.beforeQuiet, beforePeriod, nil); err != nil {
			return r, err
		}
		if r.Pods["before"], err = b.blockedPods(sctx, o.k, o.moveInterval, time.Minute, usedClaims, "before"); err != nil {
			return r, err
		}
		logf("N=%d: before: quiet %+v; pods %+v", n, r.Quiet["before"], r.Pods["before"])
		phase("before: 3 s polling")
	}

	if n >= o.burstMinN {
		firstNode := 0
		for _, m := range []struct {
			method string
			args   []string
		}{{"in-place", nil}, {"recreate", []string{"--repair-method=recreate"}}} {
			out := ""
			if o.profile && m.method == "in-place" {
				out = filepath.Join(tmp, fmt.Sprintf("burst-%d.pprof", n))
			}
			res, err := b.burst(sctx, "sidecar-burst-"+m.method, m.args, o.burst, firstNode, 3*time.Minute, out)
			if err != nil {
				return r, fmt.Errorf("burst %s: %w", m.method, err)
			}
			firstNode += res.NodesEvacuated
			r.Burst[m.method] = res
			logf("N=%d: burst %s: %d PVs drifted (%d nodes evacuated), all repaired %.1fs after the full read began, %d not repaired", n, m.method, res.Drifted, res.NodesEvacuated, res.Seconds, res.Missing)
		}
		phase("bursts")
	}
	return r, nil
}

// flagDefault asks the sidecar binary for the default of one of its
// duration flags (from -h), so the bench knows the period it runs with.
func flagDefault(ctx context.Context, binary, name string) (time.Duration, error) {
	out, _ := exec.CommandContext(ctx, binary, "-h").CombinedOutput()
	d, err := durationDefault(string(out), name)
	if err != nil {
		return 0, fmt.Errorf("%s -h: %w", binary, err)
	}
	return d, nil
}

// durationDefault finds the default of duration flag name in the usage
// text of Go's flag package ("  -name duration\n    \tUsage. (default 2m0s)").
func durationDefault(usage, name string) (time.Duration, error) {
	_, rest, ok := strings.Cut(usage, "  -"+name+" ")
	if !ok {
		return 0, fmt.Errorf("no flag -%s", name)
	}
	if next := strings.Index(rest, "\n  -"); next >= 0 {
		rest = rest[:next]
	}
	_, def, ok := strings.Cut(rest, "(default ")
	if !ok {
		return 0, fmt.Errorf("flag -%s has no default", name)
	}
	def, _, _ = strings.Cut(def, ")")
	return time.ParseDuration(def)
}

// Command bench measures the sidecar on the local test bed at scale: N static
// PVs on 100 LINSTOR nodes (real etcd and kube-apiserver, the LINSTOR REST
// simulator, the sidecar as its own process), and writes bench/REPORT.md, a
// JSON file of the figures and a PNG plot of convergence latency against N.
//
//	go run ./test/bench                  # N = 1000 and 10000, as make bench does
//	go run ./test/bench -n 1000 -k 20    # a quick look
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
	"syscall"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

type options struct {
	ns           []int
	k            int
	moveInterval time.Duration
	steady       time.Duration
	burst        int
	burstMinN    int
	out          string
	logDir       string
	profile      bool
	goBench      bool
	realistic    bool
}

func main() {
	var o options
	var ns string
	flag.StringVar(&ns, "n", "1000,10000", "Comma-separated numbers of PVs, one bed each.")
	flag.IntVar(&o.k, "k", 100, "Replica moves per convergence run.")
	flag.DurationVar(&o.moveInterval, "move-interval", 1100*time.Millisecond, "Pause between two moves; keeps under the default --max-repairs-per-minute=60.")
	flag.DurationVar(&o.steady, "steady", 30*time.Second, "Steady-state measuring window.")
	flag.IntVar(&o.burst, "burst", 1000, "PVs to drift at once by evacuating nodes.")
	flag.IntVar(&o.burstMinN, "burst-min-n", 5000, "Run the burst only for N at least this (smaller beds have too few strict volumes).")
	flag.StringVar(&o.out, "out", "bench", "Directory for REPORT.md, results.json and convergence.png (relative to the repository root).")
	flag.StringVar(&o.logDir, "log-dir", "", "Keep component logs here; empty: a temp dir, removed.")
	flag.BoolVar(&o.profile, "profile", true, "Take CPU profiles of the sidecar (steady state, burst) and a heap profile for the report.")
	flag.BoolVar(&o.goBench, "gobench", true, "Run the Go benchmarks of package sidecar first and put them in the report.")
	flag.BoolVar(&o.realistic, "realistic", false, "Run the LINSTOR simulator in its realistic mode (answers that change between requests, deletion windows; see test/linstorsim/README.md).")
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
	rep := report{Machine: machine(), Options: o.describe(), Started: began.UTC()}
	if o.goBench {
		logf("running the Go benchmarks of package sidecar")
		cmd := exec.CommandContext(ctx, "go", "test", "-run=^$", "-bench=.", "-benchmem", "./sidecar/")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("go test -bench: %v\n%s", err, out)
		}
		rep.GoBench = keepBenchLines(string(out))
		fmt.Fprint(os.Stderr, rep.GoBench)
	}
	for _, n := range o.ns {
		r, err := runN(ctx, o, n, binary, tmp)
		if err != nil {
			return fmt.Errorf("n=%d: %w", n, err)
		}
		rep.Runs = append(rep.Runs, r)
	}
	rep.Took = time.Since(began).Round(time.Second).String()
	if err := writePlot(filepath.Join(out, "convergence.png"), rep.Runs); err != nil {
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
	logf("wrote %s/REPORT.md, results.json, convergence.png in %v", out, time.Since(began).Round(time.Second))
	return nil
}

func runN(ctx context.Context, o options, n int, binary, tmp string) (runResult, error) {
	r := runResult{N: n, Convergence: map[string]convResult{}, Burst: map[string]burstResult{}}
	logDir := ""
	if o.logDir != "" {
		logDir = filepath.Join(o.logDir, fmt.Sprintf("n%d", n))
	}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	start := time.Now()
	b, err := startBed(sctx, n, binary, logDir, o.realistic, logf)
	if err != nil {
		return r, err
	}
	defer func() {
		if err := b.stop(); err != nil {
			logf("%v", err)
		}
	}()
	r.SetupSeconds = time.Since(start).Seconds()

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

	// Steady state: let startup garbage settle for a few cycles first.
	time.Sleep(10 * time.Second)
	if r.Steady, err = b.measureSteady(sctx, o.steady); err != nil {
		return r, err
	}
	logf("N=%d: steady %+v", n, r.Steady)
	if o.profile {
		if r.SteadyProfile, err = b.profile(sctx, 20, filepath.Join(tmp, fmt.Sprintf("steady-%d.pprof", n)), nil); err != nil {
			return r, err
		}
		if r.SteadyHeap, err = b.heapTop(sctx, filepath.Join(tmp, fmt.Sprintf("heap-%d.pprof", n))); err != nil {
			return r, err
		}
	}

	used := map[string]bool{}
	convergence := func(method string) error {
		lat, missing, err := b.convergence(sctx, o.k, o.moveInterval, used)
		if err != nil {
			return err
		}
		r.Convergence[method] = convResult{K: o.k, IntervalSeconds: o.moveInterval.Seconds(), Latency: summarize(lat), Missing: len(missing)}
		logf("N=%d: convergence %s %+v, %d not repaired", n, method, summarize(lat), len(missing))
		return nil
	}
	// Default settings: --repair-method=auto finds in-place updates allowed.
	if err := convergence("in-place"); err != nil {
		return r, err
	}
	if err := b.stopSidecar(); err != nil {
		return r, err
	}
	if s, err = b.startSidecar(sctx, "sidecar-recreate", "--repair-method=recreate"); err != nil {
		return r, err
	}
	if _, err := s.firstReconcile(sctx); err != nil {
		return r, err
	}
	if err := convergence("recreate"); err != nil {
		return r, err
	}

	if n >= o.burstMinN {
		firstNode := 0
		burst := func(method string, args ...string) error {
			if err := b.stopSidecar(); err != nil {
				return err
			}
			// The burst lifts the repair rate limit (see the report).
			s, err := b.startSidecar(sctx, "sidecar-burst-"+method, append([]string{"--max-repairs-per-minute=0"}, args...)...)
			if err != nil {
				return err
			}
			if _, err := s.firstReconcile(sctx); err != nil {
				return err
			}
			time.Sleep(3 * time.Second)
			var res burstResult
			run := func() {
				var lat []time.Duration
				var missing []string
				var all time.Duration
				res.Drifted, all, lat, missing, res.NodesEvacuated, res.err = b.burst(sctx, o.burst, firstNode, 3*time.Minute)
				res.AllSeconds, res.Latency, res.Missing = all.Seconds(), summarize(lat), len(missing)
			}
			if o.profile && method == "in-place" {
				top, err := b.profile(sctx, 20, filepath.Join(tmp, fmt.Sprintf("burst-%d.pprof", n)), run)
				if err != nil {
					return err
				}
				r.BurstProfile = top
			} else {
				run()
			}
			if res.err != nil {
				return res.err
			}
			firstNode += res.NodesEvacuated
			r.Burst[method] = res
			logf("N=%d: burst %s: %d PVs drifted (%d nodes evacuated), all repaired after %.1fs, %d not repaired", n, method, res.Drifted, res.NodesEvacuated, res.AllSeconds, res.Missing)
			return nil
		}
		if err := burst("recreate", "--repair-method=recreate"); err != nil {
			return r, err
		}
		if err := burst("in-place"); err != nil {
			return r, err
		}
	}
	return r, nil
}

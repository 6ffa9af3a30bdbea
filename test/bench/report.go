package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

type convResult struct {
	K               int     `json:"k"`
	IntervalSeconds float64 `json:"intervalSeconds"`
	Latency         summary `json:"latency"`
	Missing         int     `json:"notRepaired"`
}

type burstResult struct {
	Drifted        int     `json:"drifted"`
	NodesEvacuated int     `json:"nodesEvacuated"`
	AllSeconds     float64 `json:"allRepairedSeconds"`
	Latency        summary `json:"latency"`
	Missing        int     `json:"notRepaired"`
	err            error
}

type runResult struct {
	N              int                    `json:"n"`
	SetupSeconds   float64                `json:"setupSeconds"`
	StartupSeconds float64                `json:"startupSeconds"`
	Steady         steadyResult           `json:"steady"`
	Convergence    map[string]convResult  `json:"convergence"`
	Burst          map[string]burstResult `json:"burst"`
	SteadyProfile  string                 `json:"steadyProfile,omitempty"`
	BurstProfile   string                 `json:"burstProfile,omitempty"`
	SteadyHeap     string                 `json:"steadyHeap,omitempty"`
}

type report struct {
	Machine map[string]string `json:"machine"`
	Options map[string]string `json:"options"`
	Started time.Time         `json:"started"`
	Took    string            `json:"took"`
	GoBench string            `json:"goBench,omitempty"`
	Runs    []runResult       `json:"runs"`
}

// keepBenchLines keeps the result lines of go test -bench output.
func keepBenchLines(out string) string {
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "Benchmark") || strings.HasPrefix(line, "cpu:") || strings.HasPrefix(line, "goos:") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n") + "\n"
}

func (o options) describe() map[string]string {
	return map[string]string{
		"k": fmt.Sprint(o.k), "moveInterval": o.moveInterval.String(), "steadyWindow": o.steady.String(),
		"burst": fmt.Sprint(o.burst),
	}
}

func machine() map[string]string {
	m := map[string]string{"nproc": fmt.Sprint(runtime.NumCPU()), "go": runtime.Version(), "os": runtime.GOOS + "/" + runtime.GOARCH}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		if line, _, ok := strings.Cut(string(raw), "\n"); ok {
			m["memory"] = strings.Join(strings.Fields(line)[1:], " ")
		}
	}
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		m["kernel"] = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m["commit"] = strings.TrimSpace(string(out))
		// The sidecar is built from the working tree: say when it differs.
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=all", "--", "sidecar", "cmd", "csiprobe").Output(); err == nil {
			var paths []string
			for _, line := range strings.Split(string(st), "\n") {
				if len(line) > 3 {
					paths = append(paths, line[3:])
				}
			}
			if len(paths) > 0 {
				m["commit"] += " plus uncommitted changes to " + strings.Join(paths, ", ")
			}
		}
	}
	return m
}

func check(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// markdown renders the report. The targets are issue #6's figures at N=10,000.
func (r report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Benchmark report\n\n")
	w("Written by `make bench` (`go run ./test/bench`) on %s; the run took %s. Machine: %s CPUs (%s), %s memory, Linux %s, %s; commit %s.\n\n",
		r.Started.Format("2006-01-02 15:04 UTC"), r.Took, r.Machine["nproc"], r.Machine["cpu"], r.Machine["memory"], r.Machine["kernel"], r.Machine["go"], r.Machine["commit"])
	w("The bed: a real etcd and kube-apiserver (`MutablePVNodeAffinity=true`), the LINSTOR REST simulator with 100 nodes in 5 zones, N static PVs (2 or 3 diskful replicas each; StorageClass policies: half strict `false`, a quarter `fromSame: [zone]`, a quarter `true`), and the sidecar built from this checkout as its own process with default settings (leader election on), in standalone mode (`--csi-address=` `--driver-name`), with `--new-pv-grace-period=0` (every PV is new) and `--enable-pprof`. No controller-manager, scheduler, CSI driver or provisioner run: they would only share the 2 cores without being measured. See bench/README.md for why and what that leaves out.\n\n")
	w("Moves: %s replicas, one every %s (under the default 60 repairs per minute). Burst: nodes are evacuated one after the other until %s PVs drifted, with `--max-repairs-per-minute=0`.\n\n", r.Options["k"], r.Options["moveInterval"], r.Options["burst"])

	w("## Figures\n\n| | target at N=10,000 |")
	for _, run := range r.Runs {
		w(" N=%d |", run.N)
	}
	w("\n|---|---|")
	for range r.Runs {
		w("---|")
	}
	w("\n")
	row := func(name, target string, cell func(runResult) string) {
		w("| %s | %s |", name, target)
		for _, run := range r.Runs {
			w(" %s |", cell(run))
		}
		w("\n")
	}
	row("LINSTOR requests per steady cycle", "≤ 3", func(x runResult) string { return fmt.Sprintf("%.2f", x.Steady.LinstorPerCycle) })
	row("Kubernetes API requests per steady cycle (leases apart)", "0", func(x runResult) string { return fmt.Sprintf("%.2f", x.Steady.KubePerCycle) })
	row("Lease renewals per steady cycle", "–", func(x runResult) string { return fmt.Sprintf("%.2f", x.Steady.KubeLeasePerCycle) })
	row("CPU per steady cycle", "< 50 ms", func(x runResult) string { return fmt.Sprintf("%.1f ms", x.Steady.CPUPerCycleMs) })
	row("Steady CPU use", "–", func(x runResult) string { return fmt.Sprintf("%.2f %%", x.Steady.CPUPercent) })
	row("Resident memory (VmRSS), steady", "< 80 MiB", func(x runResult) string { return fmt.Sprintf("%.1f MiB", x.Steady.RSSMiB) })
	row("… of which anonymous (heap, stacks) / file-backed (the program's pages)", "–", func(x runResult) string {
		return fmt.Sprintf("%.1f / %.1f MiB", x.Steady.RSSAnonMiB, x.Steady.RSSFileMiB)
	})
	row("Go heap in use, steady", "–", func(x runResult) string { return fmt.Sprintf("%.1f MiB", x.Steady.HeapInuseMiB) })
	row("Peak resident memory (VmHWM) so far", "–", func(x runResult) string { return fmt.Sprintf("%.1f MiB", x.Steady.PeakRSSMiB) })
	row("Cycle duration, steady (average)", "–", func(x runResult) string { return fmt.Sprintf("%.1f ms", x.Steady.CycleDurationMsAvg) })
	for _, m := range []string{"in-place", "recreate"} {
		for _, st := range []string{"median", "p99", "max"} {
			target := "–"
			if st == "p99" {
				target = "< 7 s"
			}
			row(fmt.Sprintf("Convergence after a move, %s, %s", m, st), target, func(x runResult) string {
				c, ok := x.Convergence[m]
				if !ok {
					return "–"
				}
				v := map[string]float64{"median": c.Latency.Median, "p99": c.Latency.P99, "max": c.Latency.Max}[st]
				s := fmt.Sprintf("%.2f s", v)
				if c.Missing > 0 {
					s += fmt.Sprintf(" (%d not repaired)", c.Missing)
				}
				return s
			})
		}
	}
	for _, m := range []string{"recreate", "in-place"} {
		target := "< 60 s"
		if m == "in-place" {
			target = "< 15 s"
		}
		row(fmt.Sprintf("Burst: all drifted PVs repaired, %s", m), target, func(x runResult) string {
			bu, ok := x.Burst[m]
			if !ok {
				return "–"
			}
			s := fmt.Sprintf("%.1f s for %d PVs", bu.AllSeconds, bu.Drifted)
			if bu.Missing > 0 {
				s += fmt.Sprintf(" (%d not repaired)", bu.Missing)
			}
			return s
		})
	}
	row("Startup to first complete reconcile", "< 10 s", func(x runResult) string { return fmt.Sprintf("%.2f s", x.StartupSeconds) })
	row("Bed setup (control plane, LINSTOR, PVs)", "–", func(x runResult) string { return fmt.Sprintf("%.0f s", x.SetupSeconds) })
	w("\n![Convergence latency against N](convergence.png)\n\n")

	for _, run := range r.Runs {
		if run.N != 10000 {
			continue
		}
		w("## Targets at N=10,000\n\n")
		s := run.Steady
		w("- Steady LINSTOR requests ≤ 3 per cycle: %s (%.2f).\n", check(s.LinstorPerCycle <= 3.0001), s.LinstorPerCycle)
		w("- Zero Kubernetes API requests per steady cycle: %s (%.2f; lease renewals, which do not depend on N, %.2f).\n", check(s.KubePerCycle == 0), s.KubePerCycle, s.KubeLeasePerCycle)
		w("- CPU < 50 ms per cycle: %s (%.1f ms).\n", check(s.CPUPerCycleMs < 50), s.CPUPerCycleMs)
		w("- RSS < 80 MiB: %s (%.1f MiB).\n", check(s.RSSMiB < 80), s.RSSMiB)
		for _, m := range []string{"in-place", "recreate"} {
			if c, ok := run.Convergence[m]; ok {
				w("- Convergence p99 < 7 s, %s: %s (%.2f s).\n", m, check(c.Latency.P99 < 7 && c.Missing == 0), c.Latency.P99)
			}
		}
		if bu, ok := run.Burst["recreate"]; ok {
			w("- Burst by recreate < 60 s: %s (%.1f s for %d PVs).\n", check(bu.AllSeconds < 60 && bu.Missing == 0), bu.AllSeconds, bu.Drifted)
		}
		if bu, ok := run.Burst["in-place"]; ok {
			w("- Burst in place < 15 s: %s (%.1f s for %d PVs).\n", check(bu.AllSeconds < 15 && bu.Missing == 0), bu.AllSeconds, bu.Drifted)
		}
		w("- Startup < 10 s: %s (%.2f s).\n\n", check(run.StartupSeconds < 10), run.StartupSeconds)
	}

	w("## Where the CPU goes\n\n")
	for _, run := range r.Runs {
		if run.SteadyProfile != "" {
			w("### N=%d, steady state (20 s CPU profile)\n\n```\n%s```\n\n", run.N, trimProfile(run.SteadyProfile))
		}
		if run.BurstProfile != "" {
			w("### N=%d, in-place burst (first 20 s)\n\n```\n%s```\n\n", run.N, trimProfile(run.BurstProfile))
		}
	}
	w("## What is live on the heap\n\n")
	for _, run := range r.Runs {
		if run.SteadyHeap != "" {
			w("### N=%d, after the steady window (`/debug/pprof/heap?gc=1`, in use)\n\n```\n%s```\n\n", run.N, trimProfile(run.SteadyHeap))
		}
	}
	if r.GoBench != "" {
		w("## Go benchmarks (`go test -run=^$ -bench=. -benchmem ./sidecar/`)\n\n```\n%s```\n\n", r.GoBench)
		w("`BenchmarkDecideAll10k*` is the pure decision over 10,000 PVs; `BenchmarkBulkFetch*` the LINSTOR read against the simulator in the same process (so time and allocations include the simulator's encoding): nothing changed (a LINSTOR repeating its answers, and a realistic one whose answers differ in every request, at 10,000 and 50,000 volumes), after one move, and decoded by golinstor into its full types as every cycle did before; `BenchmarkBulkDecodeRealisticView10k` the decoding of one realistic resource view alone.\n\n")
	}
	w("## LINSTOR requests by route, steady state\n\n")
	for _, run := range r.Runs {
		w("- N=%d over %.0f cycles:", run.N, run.Steady.Cycles)
		for route, n := range run.Steady.LinstorRoutes {
			w(" `%s` %d;", route, n)
		}
		w("\n")
	}
	return b.String()
}

// trimProfile drops pprof's header lines about the file and build.
func trimProfile(top string) string {
	var out []string
	for _, line := range strings.Split(top, "\n") {
		if strings.HasPrefix(line, "File:") || strings.HasPrefix(line, "Build ID:") || strings.HasPrefix(line, "Type:") || strings.HasPrefix(line, "Time:") {
			continue
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

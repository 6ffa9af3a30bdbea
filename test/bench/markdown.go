package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Labels of the sidecar configurations and of the replay in the report.
const (
	labelDefault = "default flags"
	labelBefore  = "before: 3 s polling"
	labelReplay  = "a replay of upstream's schedule"
)

// The targets of issue 14.
const (
	targetPodP99        = 2.0 // s, (a) at N=10,000
	targetBytesRatio    = 0.5 // (b) ours/replay, every N
	targetRSS10k        = 64  // MiB, (d) at N=10,000
	targetRSS50k        = 160 // MiB, (d) at N=50,000
	targetBurstInPlace  = 15  // s, (e)
	targetBurstRecreate = 60  // s, (e)
)

// header writes the head of a Markdown table with these columns.
func header(w func(string, ...any), cols ...string) {
	w("|")
	for _, c := range cols {
		w(" %s |", c)
	}
	w("\n|")
	for range cols {
		w("---|")
	}
	w("\n")
}

// nColumns are the column names of the runs, one per N.
func (r report) nColumns() []string {
	var cols []string
	for _, run := range r.Runs {
		cols = append(cols, fmt.Sprintf("N=%d", run.N))
	}
	return cols
}

func check(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// mb renders bytes as MB (10^6), kB under 1 MB.
func mb(bytes float64) string {
	if bytes < 1e6 {
		return fmt.Sprintf("%.1f kB", bytes/1e3)
	}
	return fmt.Sprintf("%.1f MB", bytes/1e6)
}

func secs(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f s", v)
}

func ms(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.1f ms", 1000*v)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

// markdown renders the report.
func (r report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Benchmark report\n\n")
	w("Written by `make bench` (`go run ./test/bench`) on %s; the run took %s. Machine: %s CPUs (%s), %s memory, Linux %s, %s, load average %s when it began; commit %s.\n\n",
		r.Started.Format("2006-01-02 15:04 UTC"), r.Took, r.Machine["nproc"], r.Machine["cpu"], r.Machine["memory"], r.Machine["kernel"], r.Machine["go"], r.Machine["loadavg"], r.Machine["commit"])
	r.writeBed(w)

	w("## Figures\n\n")
	header(w, append([]string{"", "target"}, r.nColumns()...)...)
	row := func(name, target string, cell func(runResult) string) {
		w("| %s | %s |", name, target)
		for _, run := range r.Runs {
			w(" %s |", cell(run))
		}
		w("\n")
	}
	r.podRows(row)
	r.trafficRows(row)
	row("(c) Volume no pod waits for: move to PV repaired, median / p99 / max", "reported", func(x runResult) string {
		u := x.Unattended
		if u.Latency.Count == 0 {
			return "–"
		}
		s := fmt.Sprintf("%.1f / %.1f / %.1f s", u.Latency.Median, u.Latency.P99, u.Latency.Max)
		if u.Missing > 0 {
			s += fmt.Sprintf(" (%d not repaired)", u.Missing)
		}
		return s
	})
	r.memoryRows(row)
	r.burstRows(row)
	row("Startup to first complete reconcile", "< 10 s", func(x runResult) string { return secs(x.StartupSeconds) })
	w("\n![Time from a replica move to the blocked pod scheduled, against N](pod-scheduled.png)\n\n")

	r.writeTargets(w)
	r.writeAPILatency(w)
	r.writeRoutes(w)
	r.writeProfiles(w)
	r.writePhases(w)
	return b.String()
}

func (r report) writeBed(w func(string, ...any)) {
	w("The bed: a real etcd, kube-apiserver (`MutablePVNodeAffinity=true`) and kube-scheduler; 100 Kubernetes Nodes labelled with the topology LINSTOR CSI reports (`linbit.com/hostname`, `topology.kubernetes.io/zone`); the LINSTOR REST simulator with those 100 nodes in 5 zones and 10 departing nodes (no Kubernetes Node, `AutoplaceTarget=false`); N static PVs. For the pods of (a), some volumes (%s) are strict with one replica on a departing node and a pre-bound claim; the others have 2 or 3 diskful replicas (StorageClass policies: half strict `false`, a quarter `fromSame: [zone]`, a quarter `true`). ", r.claimsNote())
	w("The sidecar is built from this checkout and runs as its own process with its default flags (`--reconcile-rate` %s), except what the bed needs: standalone mode (`--csi-address=` `--driver-name`), the admin kubeconfig, leader election in `default`, `--http-endpoint`, `--new-pv-grace-period=0` (every PV is new) and `--enable-pprof`. No controller-manager, CSI driver, provisioner or kubelet runs; see bench-results/README.md for why and what that leaves out.\n\n", r.Period)
	w("Simulator: %s.\n\n", r.simulatorNote())
	w("Moves: (a) %s moves per configuration, one every %s, each of a strict volume's only replica off its departing node, followed by a pod using its claim (measured until the pod has a node); (c) %s moves of other strict or zone volumes, without a pod, spread over one period of the full read, during (a). Quiet window (b, d): the whole periods of the full read that fit in %s (at least 2), from the end of one full read to the end of another; %s for %s. The replay of upstream's schedule runs alone, for %s, before the sidecar starts. Burst (e): with the sidecar stopped, nodes are evacuated one after the other until %s PVs drifted; the sidecar then starts with its defaults (and `--repair-method=recreate` for the recreate run) and finds the drift in its first full read.\n\n",
		r.Options["k"], r.Options["moveInterval"], r.Options["k"], r.Options["quietWindow"], r.Options["beforeQuietWindow"], labelBefore, r.Options["replayWindow"], r.Options["burst"])
}

// claimsNote says how many volumes have a claim, per N.
func (r report) claimsNote() string {
	var parts []string
	for _, run := range r.Runs {
		parts = append(parts, fmt.Sprintf("%d at N=%d", run.Claims, run.N))
	}
	return strings.Join(parts, ", ")
}

func (r report) simulatorNote() string {
	on := len(r.Runs) > 0
	for _, run := range r.Runs {
		on = on && run.Realistic
	}
	switch {
	case on:
		return "realistic mode (volatile state fields and timestamps, a `DRBD_DELETE` window, Outdated and Failed disks, resources without volumes left out of the view)"
	case r.Options["realistic"] == "true":
		return "**stable answers, not the realistic mode**: `-realistic` asked for it, but this build's simulator does not have it yet (see `simOptions` in test/bench/bed.go); every answer repeats the stored state byte for byte, which a real LINSTOR does not"
	default:
		return "stable answers (`-realistic=false`): every answer repeats the stored state byte for byte, which a real LINSTOR does not"
	}
}

func (r report) podRows(row func(string, string, func(runResult) string)) {
	for _, cfg := range []struct{ key, label, target string }{{"default", labelDefault, "p99 < 2 s at N=10,000"}, {"before", labelBefore, "–"}} {
		pod := func(x runResult) (podResult, bool) {
			p, ok := x.Pods[cfg.key]
			return p, ok && p.Latency.Count > 0
		}
		row(fmt.Sprintf("(a) Replica move to blocked pod scheduled, median / p99 / max, %s", cfg.label), cfg.target, func(x runResult) string {
			p, ok := pod(x)
			if !ok {
				return "–"
			}
			return fmt.Sprintf("%.2f / %.2f / %.2f s", p.Latency.Median, p.Latency.P99, p.Latency.Max)
		})
		row(fmt.Sprintf("(a) … pods scheduled on the volume's new node, %s", cfg.label), "all", func(x runResult) string {
			p, ok := x.Pods[cfg.key]
			if !ok {
				return "–"
			}
			return fmt.Sprintf("%d of %d (%d not scheduled)", p.Latency.Count-p.WrongNode, p.K, p.NotScheduled)
		})
	}
	row("(a) Sidecar's `blocked_pod_repair_seconds` (from a `PodScheduled` transition time, 1 s resolution), count / median / p99", "–", func(x runResult) string {
		h := x.Pods["default"].Repair
		if h.Count == 0 {
			return "–"
		}
		return fmt.Sprintf("%.0f / %s / %s", h.Count, secs(h.Median), secs(h.P99))
	})
}

func (r report) trafficRows(row func(string, string, func(runResult) string)) {
	quiet := func(key string, f func(traffic) string) func(runResult) string {
		return func(x runResult) string {
			q, ok := x.Quiet[key]
			if !ok {
				return "–"
			}
			return f(q.Traffic)
		}
	}
	reqs := func(t traffic) string { return fmt.Sprintf("%.1f", t.requestsPerMinute()) }
	bytes := func(t traffic) string { return mb(t.bytesPerMinute()) }
	row("(b) LINSTOR requests per minute, quiet, "+labelDefault, "–", quiet("default", reqs))
	row("(b) LINSTOR requests per minute, "+labelReplay, "–", func(x runResult) string { return reqs(x.Replay) })
	row("(b) LINSTOR requests per minute, quiet, "+labelBefore, "–", quiet("before", reqs))
	row("(b) LINSTOR answer bytes per minute, quiet, "+labelDefault, "–", quiet("default", bytes))
	row("(b) LINSTOR answer bytes per minute, "+labelReplay, "–", func(x runResult) string { return bytes(x.Replay) })
	row("(b) LINSTOR answer bytes per minute, quiet, "+labelBefore, "–", quiet("before", bytes))
	row("(b) Ours / replay, bytes", "≤ 0.5", func(x runResult) string {
		return fmt.Sprintf("%.2f", ratio(x.Quiet["default"].Traffic.bytesPerMinute(), x.Replay.bytesPerMinute()))
	})
	row("(b) Ours / replay, requests", "–", func(x runResult) string {
		return fmt.Sprintf("%.2f", ratio(x.Quiet["default"].Traffic.requestsPerMinute(), x.Replay.requestsPerMinute()))
	})
	row("(b) Quiet window: full reads / minutes", "≥ 2 reads", func(x runResult) string {
		q := x.Quiet["default"]
		return fmt.Sprintf("%.0f / %.1f", q.FullReads, q.Traffic.Seconds/60)
	})
	row("Kubernetes API requests per quiet minute (Lease renewals apart)", "0", func(x runResult) string {
		q := x.Quiet["default"]
		return fmt.Sprintf("%.1f (Lease %.1f)", q.KubePerMinute, q.LeasePerMinute)
	})
}

func (r report) memoryRows(row func(string, string, func(runResult) string)) {
	q := func(f func(quietResult) string) func(runResult) string {
		return func(x runResult) string { return f(x.Quiet["default"]) }
	}
	row("(d) Resident memory (VmRSS), end of the quiet window", "≤ 64 MiB at 10,000; ≤ 160 MiB at 50,000", q(func(s quietResult) string { return fmt.Sprintf("%.1f MiB", s.RSSMiB) }))
	row("(d) … of which anonymous (heap, stacks) / file-backed (the program's pages)", "–", q(func(s quietResult) string {
		return fmt.Sprintf("%.1f / %.1f MiB", s.RSSAnonMiB, s.RSSFileMiB)
	}))
	row(fmt.Sprintf("(d) Resident memory settled: %v after the last full read (anonymous)", settleAfterRead), "–", q(func(s quietResult) string {
		return fmt.Sprintf("%.1f MiB (%.1f)", s.SettledRSSMiB, s.SettledAnonMiB)
	}))
	row("(d) Go heap in use, end of the quiet window", "–", q(func(s quietResult) string { return fmt.Sprintf("%.1f MiB", s.HeapInuseMiB) }))
	row("(d) Peak resident memory (VmHWM) since start", "–", q(func(s quietResult) string { return fmt.Sprintf("%.1f MiB", s.PeakRSSMiB) }))
	row("(d) CPU per quiet full read (all the process's CPU in the window / full reads)", "–", q(func(s quietResult) string { return fmt.Sprintf("%.0f ms", s.CPUPerReadMs) }))
	row("(d) CPU use in the quiet window", "–", q(func(s quietResult) string { return fmt.Sprintf("%.3f %%", s.CPUPercent) }))
	row("(d) Full read duration (LINSTOR read only, average)", "–", q(func(s quietResult) string { return fmt.Sprintf("%.0f ms", s.FetchDurationMsAvg) }))
	row("(d) CPU use, quiet, "+labelBefore, "–", func(x runResult) string {
		s, ok := x.Quiet["before"]
		if !ok {
			return "–"
		}
		return fmt.Sprintf("%.2f %% (%.1f ms per read)", s.CPUPercent, s.CPUPerReadMs)
	})
}

func (r report) burstRows(row func(string, string, func(runResult) string)) {
	for _, m := range []struct {
		method string
		target float64
	}{{"in-place", targetBurstInPlace}, {"recreate", targetBurstRecreate}} {
		row(fmt.Sprintf("(e) Rotation: all drifted PVs repaired, from the full read that found them, %s", m.method), fmt.Sprintf("< %.0f s", m.target), func(x runResult) string {
			bu, ok := x.Burst[m.method]
			if !ok {
				return "–"
			}
			s := fmt.Sprintf("%.1f s for %d PVs", bu.Seconds, bu.Drifted)
			if bu.Missing > 0 {
				s += fmt.Sprintf(" (%d not repaired)", bu.Missing)
			}
			return s
		})
	}
}

func (r report) writeTargets(w func(string, ...any)) {
	w("## Targets (issue 14)\n\n")
	for _, run := range r.Runs {
		n := run.N
		if p, ok := run.Pods["default"]; ok && n == 10000 {
			w("- (a) p99 from a replica move to the blocked pod scheduled < %.0f s at N=10,000: %s (%.2f s; %d of %d on the new node, %d not scheduled).\n",
				targetPodP99, check(p.Latency.P99 < targetPodP99 && p.NotScheduled == 0 && p.WrongNode == 0 && p.Latency.Count > 0), p.Latency.P99, p.Latency.Count-p.WrongNode, p.K, p.NotScheduled)
		}
		if q, ok := run.Quiet["default"]; ok {
			rt := ratio(q.Traffic.bytesPerMinute(), run.Replay.bytesPerMinute())
			w("- (b) at N=%d, quiet LINSTOR bytes at most half of %s: %s (%s against %s per minute, ratio %.2f).\n",
				n, labelReplay, check(rt <= targetBytesRatio), mb(q.Traffic.bytesPerMinute()), mb(run.Replay.bytesPerMinute()), rt)
			if lim := map[int]float64{10000: targetRSS10k, 50000: targetRSS50k}[n]; lim > 0 {
				w("- (d) resident memory at N=%d ≤ %.0f MiB: %s (%.1f MiB).\n", n, lim, check(q.RSSMiB <= lim), q.RSSMiB)
			}
			w("- Zero Kubernetes API requests in a quiet minute at N=%d: %s (%.1f; Lease renewals %.1f).\n", n, check(q.KubePerMinute == 0), q.KubePerMinute, q.LeasePerMinute)
		}
		for _, m := range []struct {
			method string
			target float64
		}{{"in-place", targetBurstInPlace}, {"recreate", targetBurstRecreate}} {
			if bu, ok := run.Burst[m.method]; ok {
				w("- (e) at N=%d, the rotation repaired %s in < %.0f s: %s (%.1f s for %d PVs).\n", n, m.method, m.target, check(bu.Seconds < m.target && bu.Missing == 0), bu.Seconds, bu.Drifted)
			}
		}
		w("- Startup < 10 s at N=%d: %s (%.2f s).\n", n, check(run.StartupSeconds < 10), run.StartupSeconds)
	}
	w("\n")
}

// writeAPILatency shows the API server's latency for PV requests in the
// quiet window (the baseline) and during each burst, by verb.
func (r report) writeAPILatency(w func(string, ...any)) {
	w("## API server latency for PV requests: quiet baseline and bursts\n\n")
	w("From kube-apiserver's `apiserver_request_duration_seconds` (resource `persistentvolumes`), scraped before and right after each window; p99 from the deltas of the buckets (bounds 5, 25, 50, 100, 200, 400, 600, 800 ms, 1 s, ...), interpolated as `histogram_quantile` does. The bench GETs one PV every %v in every window, so the quiet baseline has PV requests too. A burst's window runs from the sidecar's start (its informer LISTs the PVs) to the last PV repaired.\n\n", probeEvery)
	for _, run := range r.Runs {
		windows := []struct {
			name string
			lat  map[string]verbLatency
		}{{"quiet", run.APIQuiet}}
		for _, m := range []string{"in-place", "recreate"} {
			if bu, ok := run.Burst[m]; ok {
				windows = append(windows, struct {
					name string
					lat  map[string]verbLatency
				}{"burst " + m, bu.API})
			}
		}
		verbs := map[string]bool{}
		for _, win := range windows {
			for v := range win.lat {
				verbs[v] = true
			}
		}
		if len(verbs) == 0 {
			continue
		}
		var sorted []string
		for v := range verbs {
			sorted = append(sorted, v)
		}
		sort.Strings(sorted)
		w("N=%d: requests, p99\n\n", run.N)
		cols := []string{"verb"}
		for _, win := range windows {
			cols = append(cols, win.name)
		}
		header(w, cols...)
		for _, v := range sorted {
			w("| %s |", v)
			for _, win := range windows {
				if l, ok := win.lat[v]; ok {
					w(" %.0f, %s |", l.Requests, ms(l.P99))
				} else {
					w(" – |")
				}
			}
			w("\n")
		}
		w("\n")
	}
}

func (r report) writeRoutes(w func(string, ...any)) {
	w("## LINSTOR traffic by route\n\n")
	for _, run := range r.Runs {
		sources := []struct {
			name string
			t    traffic
		}{{"quiet, " + labelDefault, run.Quiet["default"].Traffic}, {labelReplay, run.Replay}}
		if q, ok := run.Quiet["before"]; ok {
			sources = append(sources, struct {
				name string
				t    traffic
			}{"quiet, " + labelBefore, q.Traffic})
		}
		for _, src := range sources {
			var routes []string
			for route := range src.t.Routes {
				routes = append(routes, route)
			}
			sort.Strings(routes)
			w("- N=%d, %s, over %.1f min:", run.N, src.name, src.t.Seconds/60)
			for _, route := range routes {
				rt := src.t.Routes[route]
				w(" `%s` %d requests, %s;", route, rt.Requests, mb(float64(rt.Bytes)))
			}
			w("\n")
		}
	}
	w("\n")
}

func (r report) writeProfiles(w func(string, ...any)) {
	w("## Where the CPU goes\n\n")
	for _, run := range r.Runs {
		if run.QuietProfile != "" {
			w("### N=%d, the last period of the quiet window (one full read)\n\n```\n%s```\n\n", run.N, trimProfile(run.QuietProfile))
		}
		if bu, ok := run.Burst["in-place"]; ok && bu.Profile != "" {
			w("### N=%d, in-place burst (first 20 s from the full read)\n\n```\n%s```\n\n", run.N, trimProfile(bu.Profile))
		}
	}
	w("## What is live on the heap\n\n")
	for _, run := range r.Runs {
		if run.QuietHeap != "" {
			w("### N=%d, after the quiet window (`/debug/pprof/heap?gc=1`, in use)\n\n```\n%s```\n\n", run.N, trimProfile(run.QuietHeap))
		}
	}
	if r.GoBench != "" {
		w("## Go benchmarks (`go test -run=^$ -bench=. -benchmem ./sidecar/...`)\n\n```\n%s```\n\n", r.GoBench)
		w("`BenchmarkDecideAll10k*` is the pure decision over 10,000 PVs; `BenchmarkBulkFetch*` the LINSTOR read against the simulator in the same process (so time and allocations include the simulator's encoding): nothing changed (a LINSTOR repeating its answers, and a realistic one whose answers differ in every request, at 10,000 and 50,000 volumes), after one move, and decoded by golinstor into its full types as every cycle did before; `BenchmarkBulkDecodeRealisticView10k` the decoding of one realistic resource view alone; `BenchmarkPendingPodCache10k` what 10,000 blocked pods cost (the pending-pod cache and the blocked set).\n\n")
	}
}

// writePhases shows how long each part of the run took, for the budget in
// bench-results/README.md.
func (r report) writePhases(w func(string, ...any)) {
	w("## Time per part of the run\n\n")
	header(w, append([]string{"part"}, r.nColumns()...)...)
	for _, p := range []string{"setup", "replay", "quiet", "pods and unattended moves", "before: 3 s polling", "bursts"} {
		w("| %s |", p)
		for _, run := range r.Runs {
			if s, ok := run.Phases[p]; ok {
				w(" %.0f s |", s)
			} else {
				w(" – |")
			}
		}
		w("\n")
	}
}

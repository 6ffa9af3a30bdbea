package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

type runResult struct {
	N              int                    `json:"n"`
	Realistic      bool                   `json:"realisticSimulator"`
	Claims         int                    `json:"volumesWithClaims"`
	StartupSeconds float64                `json:"startupSeconds"`
	Replay         traffic                `json:"upstreamReplay"`
	Quiet          map[string]quietResult `json:"quiet"`
	Pods           map[string]podResult   `json:"blockedPods"`
	Unattended     unattendedResult       `json:"unattended"`
	Burst          map[string]burstResult `json:"burst"`
	APIQuiet       map[string]verbLatency `json:"apiServerPVLatencyQuiet"`
	QuietProfile   string                 `json:"quietProfile,omitempty"`
	QuietHeap      string                 `json:"quietHeap,omitempty"`
	// Phases are the wall-clock seconds of each part of the run.
	Phases map[string]float64 `json:"phaseSeconds"`
}

type report struct {
	Machine map[string]string `json:"machine"`
	Options map[string]string `json:"options"`
	// Period is the sidecar's default --reconcile-rate.
	Period  string      `json:"defaultReconcileRate"`
	Started time.Time   `json:"started"`
	Took    string      `json:"took"`
	GoBench string      `json:"goBench,omitempty"`
	Runs    []runResult `json:"runs"`
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
		"k": fmt.Sprint(o.k), "moveInterval": o.moveInterval.String(), "quietWindow": o.quiet.String(),
		"replayWindow": o.replay.String(), "before": fmt.Sprint(o.before), "beforeMaxN": fmt.Sprint(o.beforeMaxN),
		"beforeQuietWindow": o.beforeQuiet.String(), "burst": fmt.Sprint(o.burst), "burstMinN": fmt.Sprint(o.burstMinN),
		"realistic": fmt.Sprint(o.realistic),
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
	if raw, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(raw)); len(f) >= 3 {
			m["loadavg"] = strings.Join(f[:3], " ")
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

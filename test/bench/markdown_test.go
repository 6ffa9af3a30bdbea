package main

import (
	"strings"
	"testing"
)

// The report states each target with its figure and says met or missed;
// it never claims the realistic simulator when the run did not have it.
func TestMarkdownStatesTargetsAndTheSimulatorMode(t *testing.T) {
	quiet := func(rss, bytes float64) quietResult {
		return quietResult{RSSMiB: rss, FullReads: 2, Traffic: traffic{Seconds: 240, Bytes: int64(bytes * 4), Requests: 6}}
	}
	r := report{
		Options: map[string]string{"realistic": "true", "k": "100"},
		Period:  "2m0s",
		Runs: []runResult{
			{N: 1000, Claims: 225, Replay: traffic{Seconds: 120, Bytes: 8e6, Requests: 12},
				Quiet: map[string]quietResult{"default": quiet(50, 1e6), "before": quiet(50, 50e6)},
				Pods:  map[string]podResult{"default": {K: 100, Latency: summary{Count: 100, Median: 0.5, P99: 1.2, Max: 1.3}}}},
			{N: 10000, Claims: 225, Replay: traffic{Seconds: 120, Bytes: 80e6, Requests: 12},
				Quiet: map[string]quietResult{"default": quiet(70, 30e6)},
				Pods:  map[string]podResult{"default": {K: 100, Latency: summary{Count: 100, Median: 0.9, P99: 1.9, Max: 2.5}}},
				Burst: map[string]burstResult{"in-place": {Drifted: 1010, Seconds: 16}, "recreate": {Drifted: 1090, Seconds: 40}}},
		},
	}
	md := r.markdown()
	for _, want := range []string{
		"|  | target | N=1000 | N=10000 |\n|---|---|---|---|\n",
		"- (a) p99 from a replica move to the blocked pod scheduled < 2 s at N=10,000: met (1.90 s; 100 of 100 on the new node, 0 not scheduled).",
		"- (b) at N=1000, quiet LINSTOR bytes at most half of a replay of upstream's schedule: met (1.0 MB against 4.0 MB per minute, ratio 0.25).",
		"- (b) at N=10000, quiet LINSTOR bytes at most half of a replay of upstream's schedule: **missed** (30.0 MB against 40.0 MB per minute, ratio 0.75).",
		"- (d) resident memory at N=10000 ≤ 64 MiB: **missed** (70.0 MiB).",
		"- (e) at N=10000, the rotation repaired in-place in < 15 s: **missed** (16.0 s for 1010 PVs).",
		"- (e) at N=10000, the rotation repaired recreate in < 60 s: met (40.0 s for 1090 PVs).",
		"**stable answers, not the realistic mode**",
		"| (b) LINSTOR answer bytes per minute, quiet, before: 3 s polling | – | 50.0 MB | – |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md, "- (d) resident memory at N=1000 ") {
		t.Error("a memory target at N=1000, which has none")
	}
	r.Runs[0].Realistic, r.Runs[1].Realistic = true, true
	if md := r.markdown(); !strings.Contains(md, "Simulator: realistic mode") {
		t.Error("realistic runs not reported as such")
	}
}

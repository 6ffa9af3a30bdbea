package main

import (
	"context"
	"fmt"
	"time"
)

// quietResult is what the sidecar costs while nothing changes: LINSTOR
// traffic, Kubernetes requests, CPU and memory, over whole periods of its
// full read.
type quietResult struct {
	Traffic        traffic `json:"linstor"`
	FullReads      float64 `json:"fullReads"`
	CPUPerReadMs   float64 `json:"cpuPerFullReadMs"`
	CPUPercent     float64 `json:"cpuPercent"`
	KubePerMinute  float64 `json:"kubeRequestsPerMinute"`
	LeasePerMinute float64 `json:"kubeLeaseRequestsPerMinute"`
	RSSMiB         float64 `json:"rssMiB"`
	PeakRSSMiB     float64 `json:"peakRssMiB"`
	RSSAnonMiB     float64 `json:"rssAnonMiB"`
	RSSFileMiB     float64 `json:"rssFileMiB"`
	// SettledRSSMiB and SettledAnonMiB are taken settleAfterRead after the
	// last full read of the window: what the sidecar holds between reads,
	// once it has decided and given the read's garbage back to the OS
	// (the figures above are taken a second after the read's last answer).
	SettledRSSMiB      float64 `json:"settledRssMiB"`
	SettledAnonMiB     float64 `json:"settledAnonMiB"`
	HeapInuseMiB       float64 `json:"heapInuseMiB"`
	FetchDurationMsAvg float64 `json:"fullReadDurationMsAvg"`
}

// fullReadRoute is the request a full read sends exactly once (reads for
// blocked pods seldom ask for the nodes, and a quiet window has none).
const fullReadRoute = "GET /v1/nodes"

// awaitFullRead waits until the sidecar has asked for all nodes more than
// after times, then until the simulator has answered nothing for a second
// (the read is over), and returns the new count.
func (b *bed) awaitFullRead(ctx context.Context, after int64, timeout time.Duration) (int64, error) {
	deadline := time.Now().Add(timeout)
	var count, lastTotal int64 = 0, -1
	var still time.Time
	for {
		reqs := b.sim.RequestCounts()
		count = reqs[fullReadRoute]
		if count > after {
			total := b.sim.TotalRequests() + b.sim.TotalResponseBytes()
			if total != lastTotal {
				lastTotal, still = total, time.Now()
			} else if time.Since(still) >= time.Second {
				return count, nil
			}
		}
		if time.Now().After(deadline) {
			return count, fmt.Errorf("no full LINSTOR read within %v", timeout)
		}
		if b.sidecar.proc.Exited() {
			return count, fmt.Errorf("sidecar exited: %v\n%s", b.sidecar.proc.ExitErr(), b.sidecar.proc.LogTail(20))
		}
		select {
		case <-ctx.Done():
			return count, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// measureQuiet measures the running sidecar over whole periods of its full
// read while nothing changes: from the end of one full read to the end of
// the reads that fit in window (at least 2), so the window holds exactly
// that many. lastPeriod, when not nil, is called as the last period begins
// (a profile of it).
func (b *bed) measureQuiet(ctx context.Context, window, period time.Duration, lastPeriod func()) (quietResult, error) {
	s := b.sidecar
	pid := s.proc.Pid()
	reads := max(2, int(window/period))
	timeout := period + 2*time.Minute
	count, err := b.awaitFullRead(ctx, 0, timeout)
	if err != nil {
		return quietResult{}, err
	}
	before, err := scrape(ctx, s.url)
	if err != nil {
		return quietResult{}, err
	}
	c0 := countsOf(b.sim)
	cpu0, err := procCPU(pid)
	if err != nil {
		return quietResult{}, err
	}
	for i := 0; i < reads; i++ {
		if i == reads-1 && lastPeriod != nil {
			lastPeriod()
		}
		if count, err = b.awaitFullRead(ctx, count, timeout); err != nil {
			return quietResult{}, err
		}
	}
	cpu1, err := procCPU(pid)
	if err != nil {
		return quietResult{}, err
	}
	t := countsOf(b.sim).since(c0)
	after, err := scrape(ctx, s.url)
	if err != nil {
		return quietResult{}, err
	}
	rss, hwm, anon, file, err := procMem(pid)
	if err != nil {
		return quietResult{}, err
	}
	delta := func(name string, match map[string]string) float64 {
		return sum(after, name, match) - sum(before, name, match)
	}
	const fetches = "linstor_affinity_sidecar_linstor_fetch_duration_seconds"
	r := quietResult{
		Traffic:        t,
		FullReads:      delta(fetches+"_count", nil),
		CPUPercent:     100 * float64(cpu1-cpu0) / (t.Seconds * float64(time.Second)),
		KubePerMinute:  perMinute(delta("linstor_affinity_sidecar_kube_api_requests_total", map[string]string{"resource": "!leases"}), t.Seconds),
		LeasePerMinute: perMinute(delta("linstor_affinity_sidecar_kube_api_requests_total", map[string]string{"resource": "leases"}), t.Seconds),
		RSSMiB:         float64(rss) / (1 << 20),
		PeakRSSMiB:     float64(hwm) / (1 << 20),
		RSSAnonMiB:     float64(anon) / (1 << 20),
		RSSFileMiB:     float64(file) / (1 << 20),
		HeapInuseMiB:   sum(after, "go_memstats_heap_inuse_bytes", nil) / (1 << 20),
	}
	if r.FullReads > 0 {
		r.CPUPerReadMs = float64(cpu1-cpu0) / float64(time.Millisecond) / r.FullReads
		r.FetchDurationMsAvg = 1000 * delta(fetches+"_sum", nil) / r.FullReads
	}
	if settleAfterRead < period {
		select {
		case <-ctx.Done():
			return quietResult{}, ctx.Err()
		case <-time.After(settleAfterRead):
		}
		rss, _, anon, _, err := procMem(pid)
		if err != nil {
			return quietResult{}, err
		}
		r.SettledRSSMiB, r.SettledAnonMiB = float64(rss)/(1<<20), float64(anon)/(1<<20)
	}
	return r, nil
}

// settleAfterRead is how long after a full read the settled memory figures
// are taken: longer than deciding on 50,000 PVs takes, shorter than a period.
const settleAfterRead = 20 * time.Second

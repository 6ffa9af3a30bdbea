package main

import (
	"context"
	"fmt"
	"time"
)

// burstResult is measurement (e): a node rotation that drifts many PVs at
// once, repaired by the sidecar with its default flags.
type burstResult struct {
	Drifted        int `json:"drifted"`
	NodesEvacuated int `json:"nodesEvacuated"`
	// Seconds is from the start of the full read that found the drift (the
	// sidecar's first) until the PV watch showed every drifted PV repaired.
	Seconds float64 `json:"allRepairedSeconds"`
	// Latency is per PV, from the start of that read.
	Latency summary `json:"latency"`
	Missing int     `json:"notRepaired"`
	// StartSeconds is from the sidecar's process start to that read.
	StartSeconds float64 `json:"startToReadSeconds"`
	// API is the API server's latency for PV requests during the burst.
	API map[string]verbLatency `json:"apiServerPVLatency"`
	// Profile is the top of a CPU profile of the burst's first 20 s.
	Profile string `json:"profile,omitempty"`
}

// evacuate evacuates nodes from firstNode on, one after the other as a
// node rotation does, until at least want PVs drifted, and registers the
// drifted PVs' new affinity with w. It returns how many drifted and how
// many nodes it evacuated.
func (b *bed) evacuate(w *watcher, want, firstNode int) (drifted, nodes int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	start := time.Now()
	orig := map[string]string{}
	for node := firstNode; node < nodeCount && drifted < want; node++ {
		moves, err := b.sim.EvacuateNode(nodeName(node))
		if err != nil {
			return 0, nodes, err
		}
		nodes++
		for _, m := range moves {
			v := b.byName[m.ResourceDefinition]
			if v == nil {
				continue
			}
			if _, ok := orig[v.name]; !ok {
				orig[v.name] = affinityKey(expectedAffinity(v.policy, v.nodes))
			}
			v.nodes = replaceNode(v.nodes, m.From, m.To)
		}
		drifted = 0
		for name, before := range orig {
			v := b.byName[name]
			if affinityKey(expectedAffinity(v.policy, v.nodes)) != before {
				drifted++
			}
		}
	}
	for name, before := range orig {
		v := b.byName[name]
		if after := affinityKey(expectedAffinity(v.policy, v.nodes)); after != before {
			w.expect(name, after, start)
		}
	}
	return drifted, nodes, nil
}

// awaitRequest waits until the simulator has been asked route more than
// after times and returns when it saw that (polled every 10 ms).
func (b *bed) awaitRequest(ctx context.Context, route string, after int64, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for b.sim.RequestCounts()[route] <= after {
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no %s within %v", route, timeout)
		}
		if err := sleepUntil(ctx, time.Now().Add(10*time.Millisecond)); err != nil {
			return time.Time{}, err
		}
	}
	return time.Now(), nil
}

// viewRoute is the first request of a full read's answers to arrive in
// bulk; a sidecar just started sends it first for its first full read.
const viewRoute = "GET /v1/view/resources"

// burst is measurement (e): with the sidecar stopped, nodes are evacuated
// until at least want PVs drifted; then the sidecar starts with args (its
// defaults otherwise) and finds them all in its first full read. The time
// is from the start of that read until every drifted PV showed its new
// affinity; it does not include waiting for the read, which a running
// sidecar does for up to one --reconcile-rate (or not at all for a PV a
// pod waits for). profileOut, when not empty, gets a 20 s CPU profile.
func (b *bed) burst(ctx context.Context, name string, args []string, want, firstNode int, timeout time.Duration, profileOut string) (burstResult, error) {
	var r burstResult
	if err := b.stopSidecar(); err != nil {
		return r, err
	}
	w, err := b.watchPVs(ctx)
	if err != nil {
		return r, err
	}
	if r.Drifted, r.NodesEvacuated, err = b.evacuate(w, want, firstNode); err != nil {
		return r, err
	}
	views := b.sim.RequestCounts()[viewRoute]
	profiled := make(chan error, 1)
	profiled <- nil
	r.API, err = b.pvLatency(ctx, func() error {
		s, err := b.startSidecar(ctx, name, args...)
		if err != nil {
			return err
		}
		read, err := b.awaitRequest(ctx, viewRoute, views, 3*time.Minute)
		if err != nil {
			return err
		}
		r.StartSeconds = read.Sub(s.started).Seconds()
		if profileOut != "" {
			<-profiled
			go func() {
				top, err := b.profile(ctx, 20, profileOut, nil)
				r.Profile = top
				profiled <- err
			}()
		}
		done, missing := w.wait(ctx, timeout)
		var lat []time.Duration
		for _, h := range done {
			d := h.at.Sub(read)
			lat = append(lat, d)
			r.Seconds = max(r.Seconds, d.Seconds())
		}
		r.Latency, r.Missing = summarize(lat), len(missing)
		return nil
	})
	// The API server was scraped right after the last repair; the profile
	// may run on a little.
	if perr := <-profiled; err == nil {
		err = perr
	}
	return r, err
}

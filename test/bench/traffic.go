package main

import (
	"context"
	"fmt"
	"time"

	lapi "github.com/LINBIT/golinstor/client"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
)

// routeTraffic is what one route of the simulator answered.
type routeTraffic struct {
	Requests int64 `json:"requests"`
	Bytes    int64 `json:"bytes"`
}

// traffic is what the simulator answered in a window: requests and body
// bytes, in all and per route.
type traffic struct {
	Seconds  float64                 `json:"seconds"`
	Requests int64                   `json:"requests"`
	Bytes    int64                   `json:"bytes"`
	Routes   map[string]routeTraffic `json:"routes"`
}

func (t traffic) requestsPerMinute() float64 { return perMinute(float64(t.Requests), t.Seconds) }
func (t traffic) bytesPerMinute() float64    { return perMinute(float64(t.Bytes), t.Seconds) }

func perMinute(v, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return v * 60 / seconds
}

// simCounts is a snapshot of the simulator's request and byte counters.
type simCounts struct {
	at    time.Time
	reqs  map[string]int64
	bytes map[string]int64
}

func countsOf(sim *linstorsim.Sim) simCounts {
	return simCounts{at: time.Now(), reqs: sim.RequestCounts(), bytes: sim.ResponseBytes()}
}

// since is the traffic from c0 to c.
func (c simCounts) since(c0 simCounts) traffic {
	t := traffic{Seconds: c.at.Sub(c0.at).Seconds(), Routes: map[string]routeTraffic{}}
	for route, n := range c.reqs {
		r := routeTraffic{Requests: n - c0.reqs[route], Bytes: c.bytes[route] - c0.bytes[route]}
		if r.Requests == 0 && r.Bytes == 0 {
			continue
		}
		t.Routes[route] = r
		t.Requests += r.Requests
		t.Bytes += r.Bytes
	}
	return t
}

// Upstream's default request schedule (linstor-affinity-controller v1.5.0):
// the resource definitions with their volume definitions every
// --reconcile-rate (15 s); the nodes and the resource view from a cache
// that lives --timeout (1 m).
const (
	upstreamRDPeriod    = 15 * time.Second
	upstreamCachePeriod = time.Minute
)

// replayUpstream replays upstream's default request schedule against the
// simulator for window, with golinstor's client as upstream uses it, and
// returns the traffic it caused. It is a replay of the schedule, not the
// upstream controller: no decisions, no writes.
func replayUpstream(ctx context.Context, sim *linstorsim.Sim, window time.Duration) (traffic, error) {
	c, err := sim.NewClient()
	if err != nil {
		return traffic{}, err
	}
	c0 := countsOf(sim)
	every := int(upstreamCachePeriod / upstreamRDPeriod)
	for i := 0; time.Duration(i)*upstreamRDPeriod < window; i++ {
		if err := sleepUntil(ctx, c0.at.Add(time.Duration(i)*upstreamRDPeriod)); err != nil {
			return traffic{}, err
		}
		if _, err := c.ResourceDefinitions.GetAll(ctx, lapi.RDGetAllRequest{WithVolumeDefinitions: true}); err != nil {
			return traffic{}, fmt.Errorf("replay: resource definitions: %w", err)
		}
		if i%every != 0 {
			continue
		}
		if _, err := c.Nodes.GetAll(ctx); err != nil {
			return traffic{}, fmt.Errorf("replay: nodes: %w", err)
		}
		if _, err := c.Resources.GetResourceView(ctx); err != nil {
			return traffic{}, fmt.Errorf("replay: resource view: %w", err)
		}
	}
	if err := sleepUntil(ctx, c0.at.Add(window)); err != nil {
		return traffic{}, err
	}
	t := countsOf(sim).since(c0)
	// The schedule sets the rate: on a busy machine the last answers may
	// end after the window, but they belong to it.
	t.Seconds = window.Seconds()
	return t, nil
}

// sleepUntil waits until t or the end of ctx.
func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

package linstorsim

import (
	"maps"
	"sync"
)

// counters counts REST requests per route. The /_sim control API is not
// counted, so "LINSTOR requests per cycle" means client traffic only.
type counters struct {
	mu sync.Mutex
	m  map[string]int64
}

func (c *counters) inc(key string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int64{}
	}
	c.m[key]++
	c.mu.Unlock()
}

// RequestCounts returns how many REST requests each route received since
// start or the last reset, keyed by method and route pattern, e.g.
// "GET /v1/nodes" or "PUT /v1/resource-definitions/{rd}/volume-definitions/{vnr}".
// Requests to routes the simulator does not know are keyed
// "<METHOD> <path> (not simulated)".
func (s *Sim) RequestCounts() map[string]int64 {
	s.counts.mu.Lock()
	defer s.counts.mu.Unlock()
	return maps.Clone(s.counts.m)
}

// TotalRequests is the sum of RequestCounts.
func (s *Sim) TotalRequests() int64 {
	s.counts.mu.Lock()
	defer s.counts.mu.Unlock()
	var n int64
	for _, v := range s.counts.m {
		n += v
	}
	return n
}

// ResetRequestCounts sets every counter back to zero.
func (s *Sim) ResetRequestCounts() {
	s.counts.mu.Lock()
	s.counts.m = nil
	s.counts.mu.Unlock()
}

package linstorsim

import (
	"maps"
	"net/http"
	"sync"
)

// counters counts REST requests and the bytes of their answers per route.
// The /_sim control API is not counted, so "LINSTOR requests per cycle"
// means client traffic only.
type counters struct {
	mu    sync.Mutex
	m     map[string]int64
	bytes map[string]int64
}

// count counts one request to route key and returns w wrapped so that the
// body bytes of the answer are counted under the same key as they are
// written (a streamed list is counted chunk by chunk).
func (c *counters) count(w http.ResponseWriter, key string) http.ResponseWriter {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int64{}
	}
	c.m[key]++
	c.mu.Unlock()
	return &countingWriter{ResponseWriter: w, c: c, key: key}
}

func (c *counters) addBytes(key string, n int) {
	if n <= 0 {
		return
	}
	c.mu.Lock()
	if c.bytes == nil {
		c.bytes = map[string]int64{}
	}
	c.bytes[key] += int64(n)
	c.mu.Unlock()
}

// countingWriter counts what a handler writes of an answer's body.
type countingWriter struct {
	http.ResponseWriter
	c   *counters
	key string
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.c.addBytes(w.key, n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

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

// ResponseBytes returns how many body bytes the answers of each route held
// since start or the last reset, keyed like RequestCounts (headers and TLS
// framing are not counted; an answer cut short counts what was written).
func (s *Sim) ResponseBytes() map[string]int64 {
	s.counts.mu.Lock()
	defer s.counts.mu.Unlock()
	return maps.Clone(s.counts.bytes)
}

// TotalRequests is the sum of RequestCounts.
func (s *Sim) TotalRequests() int64 {
	s.counts.mu.Lock()
	defer s.counts.mu.Unlock()
	return total(s.counts.m)
}

// TotalResponseBytes is the sum of ResponseBytes.
func (s *Sim) TotalResponseBytes() int64 {
	s.counts.mu.Lock()
	defer s.counts.mu.Unlock()
	return total(s.counts.bytes)
}

func total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// ResetRequestCounts sets every counter, requests and bytes, back to zero.
func (s *Sim) ResetRequestCounts() {
	s.counts.mu.Lock()
	s.counts.m, s.counts.bytes = nil, nil
	s.counts.mu.Unlock()
}

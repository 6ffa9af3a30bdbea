package main

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// verbLatency is the API server's latency for PV requests of one verb in a
// window, from its own apiserver_request_duration_seconds histogram.
type verbLatency struct {
	Requests float64 `json:"requests"`
	P99      float64 `json:"p99Seconds"`
	Mean     float64 `json:"meanSeconds"`
}

// probeEvery paces the probe: one GET of a PV, so a window holds PV
// requests even when the sidecar sends none.
const probeEvery = 500 * time.Millisecond

// apiServerMetrics scrapes kube-apiserver's /metrics as the admin.
func (b *bed) apiServerMetrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	raw, err := b.kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver /metrics: %w", err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(raw))
}

// pvLatency runs fn while a probe GETs a PV every probeEvery, and returns
// the API server's latency for PV requests in that time, by verb (the p99
// from the deltas of the histogram's buckets).
func (b *bed) pvLatency(ctx context.Context, fn func() error) (map[string]verbLatency, error) {
	before, err := b.apiServerMetrics(ctx)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; pctx.Err() == nil; i++ {
			// Not found or not: the API server measures either.
			_, _ = b.kube.CoreV1().PersistentVolumes().Get(pctx, b.vols[(i*7919)%len(b.vols)].name, metav1.GetOptions{})
			_ = sleepUntil(pctx, time.Now().Add(probeEvery))
		}
	}()
	err = fn()
	cancel()
	wg.Wait()
	if err != nil {
		return nil, err
	}
	after, err := b.apiServerMetrics(ctx)
	if err != nil {
		return nil, err
	}
	const name = "apiserver_request_duration_seconds"
	match := map[string]string{"resource": "persistentvolumes"}
	h0 := histogramsOf(before, name, match, "verb")
	out := map[string]verbLatency{}
	for verb, h := range histogramsOf(after, name, match, "verb") {
		d := h.minus(h0[verb])
		if d.Count <= 0 || verb == "WATCH" {
			continue
		}
		out[verb] = verbLatency{Requests: d.Count, P99: d.quantile(0.99), Mean: d.Sum / d.Count}
	}
	return out, nil
}

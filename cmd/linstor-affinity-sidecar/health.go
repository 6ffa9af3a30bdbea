package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/controller"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// health answers the probes. /healthz is served from the first moments of
// the process and means only "alive": a liveness probe must not kill a
// sidecar that waits for its driver (the driver container may start later
// or restart), or the pod never settles. /readyz means "connected and
// synced"; while the sidecar starts it is not ready, with the reason it
// cannot go on yet (a configuration it cannot read, a driver not up).
type health struct {
	mu     sync.Mutex
	reason string
	check  func(context.Context) error
}

func newHealth() *health { return &health{reason: "starting"} }

// starting says why the sidecar is not ready yet.
func (h *health) starting(reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reason, h.check = reason, nil
}

// started hands readiness to check.
func (h *health) started(check func(context.Context) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reason, h.check = "", check
}

// ready is nil when the sidecar is ready, else the reason it is not.
func (h *health) ready(ctx context.Context) error {
	h.mu.Lock()
	reason, check := h.reason, h.check
	h.mu.Unlock()
	if check == nil {
		return errors.New(reason)
	}
	return check(ctx)
}

// register adds /healthz, /readyz, the metrics of metrics and (if enabled)
// pprof.
func (h *health) register(mux *http.ServeMux, c config, metrics prometheus.Gatherer) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := h.ready(ctx); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle(c.metricsPath, promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	if c.enablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
}

// readiness is nil once the caches synced and (with a driver) the driver
// says ready and reports topology.
func readiness(driver controller.Driver, synced func() bool) func(context.Context) error {
	return func(ctx context.Context) error {
		if !synced() {
			return errors.New("informer caches not synced")
		}
		if driver != nil {
			if err := driver.Ready(ctx); err != nil {
				return errors.New("CSI driver: " + err.Error())
			}
		}
		return nil
	}
}

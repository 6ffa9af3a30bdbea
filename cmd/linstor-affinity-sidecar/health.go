package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar"
)

// errStarting is /readyz's answer until the driver answered and the caches
// are filling.
var errStarting = errors.New("starting: waiting for the CSI driver and the API server")

// health answers the probes. /healthz is served from the first moments of
// the process and means only "alive": a liveness probe must not kill a
// sidecar that waits for its driver (the driver container may start later
// or restart), or the pod never settles. /readyz means "connected and
// synced" and is what a readiness probe or a test waits for.
type health struct {
	ready atomic.Pointer[func(context.Context) error]
}

func newHealth() *health {
	h := &health{}
	starting := func(context.Context) error { return errStarting }
	h.ready.Store(&starting)
	return h
}

// setReady replaces the readiness check (once the driver is connected).
func (h *health) setReady(check func(context.Context) error) {
	h.ready.Store(&check)
}

// register adds /healthz, /readyz, the metrics and (if enabled) pprof.
func (h *health) register(mux *http.ServeMux, c config, metrics *sidecar.Metrics) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := (*h.ready.Load())(ctx); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle(c.metricsPath, promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{}))
	if c.enablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
}

// readiness is nil once the informer caches synced and (with a driver)
// the driver says ready and reports topology.
func readiness(driver sidecar.Driver, synced func() bool) func(context.Context) error {
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

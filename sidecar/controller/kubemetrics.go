package controller

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientmetrics "k8s.io/client-go/tools/metrics"
)

// KubeClientMetrics count what the sidecar asks of the API server, so "no API
// requests while nothing changes" can be checked in production, not only in
// the benchmark: every request by result (rest_client_requests_total, the
// name every Kubernetes component uses, watches included), and every
// non-watch request by verb and resource.
type KubeClientMetrics struct {
	Results  *prometheus.CounterVec
	Requests *prometheus.CounterVec
}

var registerClientMetrics sync.Once

// RegisterKubeClientMetrics hooks client-go's request metrics into reg. client-go
// accepts one set of hooks per process; later calls return the metrics but
// do not hook them again.
func RegisterKubeClientMetrics(reg prometheus.Registerer) *KubeClientMetrics {
	m := &KubeClientMetrics{
		Results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rest_client_requests_total",
			Help: "Kubernetes API requests by HTTP status code and method, watches included.",
		}, []string{"code", "method"}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "kube_api_requests_total",
			Help: "Kubernetes API requests other than watches, by verb and resource.",
		}, []string{"verb", "resource"}),
	}
	reg.MustRegister(m.Results, m.Requests)
	registerClientMetrics.Do(func() {
		clientmetrics.Register(clientmetrics.RegisterOpts{
			RequestResult:  resultAdapter{m.Results},
			RequestLatency: latencyAdapter{m.Requests},
		})
	})
	return m
}

type resultAdapter struct{ c *prometheus.CounterVec }

func (a resultAdapter) Increment(_ context.Context, code, method, _ string) {
	a.c.WithLabelValues(code, method).Inc()
}

type latencyAdapter struct{ c *prometheus.CounterVec }

func (a latencyAdapter) Observe(_ context.Context, verb string, u url.URL, _ time.Duration) {
	a.c.WithLabelValues(verb, APIResource(u.Path)).Inc()
}

// APIResource names the resource of a Kubernetes API path, e.g.
// "persistentvolumes" for /api/v1/persistentvolumes/{name} and "leases" for
// /apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}; "other"
// for anything else (discovery, /version).
func APIResource(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return "other"
	}
	if parts[0] == "namespaces" && len(parts) >= 3 {
		parts = parts[2:]
	}
	return parts[0]
}

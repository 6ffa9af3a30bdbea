package controller

import (
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const metricsNamespace = "linstor_affinity_sidecar"

// Metrics are the sidecar's Prometheus metrics, on a registry of their own so
// tests can read them and nothing global leaks between instances.
type Metrics struct {
	Registry *prometheus.Registry

	Reconciles        *prometheus.CounterVec
	ReconcileDuration prometheus.Histogram
	LinstorFetch      prometheus.Histogram
	PVs               *prometheus.GaugeVec
	Repairs           *prometheus.CounterVec
	LastSuccess       prometheus.Gauge
	Leader            prometheus.Gauge
	BrakeHolding      *prometheus.GaugeVec
	RepairsHeld       *prometheus.CounterVec
	RepairBackoff     *prometheus.GaugeVec
	BlockedPods       prometheus.Gauge
	BlockedPodRepair  prometheus.Histogram
	DemandReads       prometheus.Counter
}

// NewMetrics registers every metric, plus the Go and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "reconciles_total",
			Help: "Reconcile cycles by result: success, error (LINSTOR or cache unavailable), skipped (CSI driver not ready).",
		}, []string{"result"}),
		ReconcileDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "reconcile_duration_seconds",
			Help:    "Duration of a reconcile cycle, from the LINSTOR read to the last repair.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		LinstorFetch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "linstor_fetch_duration_seconds",
			Help:    "Duration of the bulk LINSTOR read that starts each cycle.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 14),
		}),
		PVs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "pvs",
			Help: "PVs of this driver at the last cycle, by status (in-sync, drifted, skipped) and reason.",
		}, []string{"status", "reason"}),
		Repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "repairs_total",
			Help: "Writes to PVs and saved state by action (replace, recreate-from-saved-state, clear-saved-state), method and result.",
		}, []string{"action", "method", "result"}),
		LastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "last_successful_reconcile_timestamp_seconds",
			Help: "Unix time of the end of the last cycle that completed without error.",
		}),
		Leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "leader",
			Help: "1 while this instance holds the leader lease and acts, 0 while it stands by.",
		}),
		BrakeHolding: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "brake_holding",
			Help: "1 while a safety brake holds every repair back (brake=drift).",
		}, []string{"brake"}),
		RepairsHeld: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "repairs_held_total",
			Help: "Repairs not done in a cycle because of a brake, by reason (drift-brake, rate-limited).",
		}, []string{"reason"}),
		RepairBackoff: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "repair_backoff_seconds",
			Help: "For each PV whose last repair failed: the wait before the next attempt (doubles with each failure). No series for other PVs.",
		}, []string{"pv"}),
		BlockedPods: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "blocked_pods",
			Help: "Pods the scheduler cannot place because of a PV's node affinity (PodScheduled=False, Unschedulable, a PV node affinity conflict).",
		}),
		BlockedPodRepair: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "blocked_pod_repair_seconds",
			Help:    "For each blocked pod and each of its PVs the sidecar repaired: the time from the pod becoming unschedulable to the PV's repair.",
			Buckets: []float64{0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600},
		}),
		DemandReads: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "blocked_pod_reads_total",
			Help: "LINSTOR reads of the volumes of blocked pods (filtered requests, not the full view).",
		}),
	}
	m.Registry.MustRegister(m.Reconciles, m.ReconcileDuration, m.LinstorFetch, m.PVs, m.Repairs, m.LastSuccess, m.Leader,
		m.BrakeHolding, m.RepairsHeld, m.RepairBackoff, m.BlockedPods, m.BlockedPodRepair, m.DemandReads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// pvStatus groups decision reasons into the three statuses of the pvs metric.
func pvStatus(a decide.Action) string {
	switch {
	case a.Kind != decide.KindNone, a.Reason == ReasonBackoff, a.Reason == decide.ReasonDuplicateHandle:
		return "drifted"
	case a.Reason == decide.ReasonInSync:
		return "in-sync"
	}
	return "skipped"
}

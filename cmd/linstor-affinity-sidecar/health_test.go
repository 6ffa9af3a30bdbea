package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	csimetrics "github.com/kubernetes-csi/csi-lib-utils/metrics"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe/csifake"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/controller"
)

// /metrics serves csi-lib-utils' csi_sidecar_operations_seconds next to the
// sidecar's own metrics, for the calls made on the connection main builds.
func TestMetricsEndpointServesCSIOperations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := csifake.Start(t, csifake.Config{})
	metrics := controller.NewMetrics()
	csiMetrics := csimetrics.NewCSIMetricsManagerWithOptions("", csimetrics.WithProcessStartTime(false))
	mux := http.NewServeMux()
	newHealth().register(mux, config{metricsPath: "/metrics"}, prometheus.Gatherers{metrics.Registry, csiMetrics.GetRegistry()})

	client, info := connectDriver(ctx, config{csiAddress: srv.Address(), timeout: 10 * time.Second}, csiMetrics)
	defer func() { _ = client.Close() }()
	if _, err := client.VolumeStatus(ctx, "pvc-1"); err != nil {
		t.Fatal(err)
	}

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics answered %d:\n%s", rec.Code, body)
	}
	for _, want := range []string{
		`csi_sidecar_operations_seconds_count{driver_name="` + info.Name + `",grpc_status_code="NotFound",method_name="/csi.v1.Controller/ControllerGetVolume"} 1`,
		`csi_sidecar_operations_seconds_count{driver_name="unknown-driver",grpc_status_code="OK",method_name="/csi.v1.Identity/GetPluginInfo"} 1`,
		"linstor_affinity_sidecar_leader 0",
		"process_start_time_seconds",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
}

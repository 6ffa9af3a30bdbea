package csiprobe_test

import (
	"testing"

	"github.com/kubernetes-csi/csi-lib-utils/metrics"
	"google.golang.org/grpc/codes"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe/csifake"
)

func TestCallsAreRecordedInMetrics(t *testing.T) {
	srv := csifake.Start(t, csifake.Config{})
	srv.SetVolume("broken", csifake.Volume{Code: codes.Internal})
	mm := metrics.NewCSIMetricsManagerForSidecar(csifake.DefaultDriverName)
	c := connect(t, srv, csiprobe.Options{Timeout: callTimeout, MetricsManager: mm})
	ctx := testContext(t)

	if _, err := c.DriverInfo(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.VolumeStatus(ctx, "broken"); err == nil {
		t.Fatal("want an error for the broken volume")
	}

	families, err := mm.GetRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{} // "method code" -> sample count
	for _, f := range families {
		if f.GetName() != "csi_sidecar_operations_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["driver_name"] != csifake.DefaultDriverName {
				t.Errorf("driver_name = %q", labels["driver_name"])
			}
			got[labels["method_name"]+" "+labels["grpc_status_code"]] += m.GetHistogram().GetSampleCount()
		}
	}
	want := map[string]uint64{
		"/csi.v1.Identity/GetPluginInfo OK":               1,
		"/csi.v1.Controller/ControllerGetCapabilities OK": 1,
		"/csi.v1.Controller/ControllerGetVolume Internal": 1,
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("samples for %q = %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
}

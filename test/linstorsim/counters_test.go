package linstorsim

import (
	"fmt"
	"maps"
	"testing"

	"github.com/LINBIT/golinstor/client"
)

func TestRequestCountersCountRoutesNotControlCalls(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-1", Diskful: []string{"a"}}))

	// One sidecar cycle plus a state save.
	_, err := c.Nodes.GetAll(tctx(t))
	must(t, err)
	_, err = c.ResourceDefinitions.GetAll(tctx(t), client.RDGetAllRequest{WithVolumeDefinitions: true})
	must(t, err)
	_, err = c.Resources.GetResourceView(tctx(t))
	must(t, err)
	must(t, c.ResourceDefinitions.ModifyVolumeDefinition(tctx(t), "pvc-1", 0, client.VolumeDefinitionModify{}))
	_, err = c.ResourceDefinitions.Get(tctx(t), "pvc-1")
	must(t, err)
	_, err = c.ResourceDefinitions.Get(tctx(t), "missing")
	if err == nil {
		t.Fatal("missing RD found")
	}
	rawGet(t, s, "/v1/not-a-route")
	// Control calls are not LINSTOR traffic.
	rawGet(t, s, "/_sim/counters")
	rawGet(t, s, "/_sim/info")

	want := map[string]int64{
		"GET /v1/nodes":                1,
		"GET /v1/resource-definitions": 1,
		"GET /v1/view/resources":       1,
		"PUT /v1/resource-definitions/{rd}/volume-definitions/{vnr}": 1,
		"GET /v1/resource-definitions/{rd}":                          2,
		"GET /v1/not-a-route (not simulated)":                        1,
	}
	if got := s.RequestCounts(); !maps.Equal(got, want) {
		t.Errorf("counts = %v\nwant     %v", got, want)
	}
	if s.TotalRequests() != 7 {
		t.Errorf("total = %d, want 7", s.TotalRequests())
	}
	s.ResetRequestCounts()
	if s.TotalRequests() != 0 || len(s.RequestCounts()) != 0 {
		t.Errorf("after reset: %v", s.RequestCounts())
	}
	_, err = c.Nodes.GetAll(tctx(t))
	must(t, err)
	if got := s.RequestCounts()["GET /v1/nodes"]; got != 1 {
		t.Errorf("after reset and one call: %d", got)
	}
}

func TestFaultedRequestsAreCounted(t *testing.T) {
	s, c := startSim(t, Options{})
	_, err := s.InjectFault(Fault{Kind: FaultStatus, Count: 1})
	must(t, err)
	_, err = c.Nodes.GetAll(tctx(t))
	if err == nil {
		t.Fatal("fault did not apply")
	}
	if got := s.RequestCounts()["GET /v1/nodes"]; got != 1 {
		t.Errorf("faulted request counted %d times", got)
	}
}

// Response bytes are the body bytes a client receives, per route: streamed
// lists, single objects and error answers alike; control calls are not
// counted, and a reset clears bytes with requests.
func TestResponseBytesAreCountedPerRoute(t *testing.T) {
	s, _ := startSim(t, Options{})
	threeNodes(t, s)
	for i := 0; i < 20; i++ {
		must(t, s.CreateVolume(VolumeSpec{Name: fmt.Sprintf("pvc-%d", i), Diskful: []string{"a", "b"}}))
	}
	want := map[string]int64{}
	get := func(route, path string) {
		t.Helper()
		_, body := rawGet(t, s, path)
		if len(body) == 0 {
			t.Fatalf("%s: empty answer", path)
		}
		want[route] += int64(len(body))
	}
	get("GET /v1/view/resources", "/v1/view/resources")
	get("GET /v1/view/resources", "/v1/view/resources?resources=pvc-1")
	get("GET /v1/resource-definitions", "/v1/resource-definitions?with_volume_definitions=true")
	get("GET /v1/nodes", "/v1/nodes")
	get("GET /v1/resource-definitions/{rd}", "/v1/resource-definitions/pvc-3")
	get("GET /v1/resource-definitions/{rd}", "/v1/resource-definitions/missing") // an ApiCallError list
	rawGet(t, s, "/_sim/counters")

	if got := s.ResponseBytes(); !maps.Equal(got, want) {
		t.Errorf("bytes = %v\nwant    %v", got, want)
	}
	var sum int64
	for _, n := range want {
		sum += n
	}
	if got := s.TotalResponseBytes(); got != sum {
		t.Errorf("total bytes = %d, want %d", got, sum)
	}
	// The whole view is the biggest answer here by far: a sanity check
	// that streamed chunks all count.
	if v := want["GET /v1/view/resources"]; v < 20*200 {
		t.Errorf("view bytes = %d, want the 40 replicas of 20 volumes", v)
	}
	s.ResetRequestCounts()
	if s.TotalResponseBytes() != 0 || len(s.ResponseBytes()) != 0 {
		t.Errorf("after reset: %v", s.ResponseBytes())
	}
}

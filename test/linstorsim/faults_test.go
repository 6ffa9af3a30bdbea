package linstorsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/LINBIT/golinstor/client"
)

func tenNodes(t *testing.T, s *Sim) {
	t.Helper()
	for i := 0; i < 10; i++ {
		must(t, s.AddNode(fmt.Sprintf("n%d", i), nil, StoragePool{Name: "thin"}))
	}
}

func TestStatusFaultFailsTheNextNRequestsThenStops(t *testing.T) {
	s, c := startSim(t, Options{})
	tenNodes(t, s)
	_, err := s.InjectFault(Fault{Kind: FaultStatus, Status: 503, Method: "GET", PathPrefix: "/v1/nodes", Count: 2})
	must(t, err)

	for i := 0; i < 2; i++ {
		_, err := c.Nodes.GetAll(tctx(t))
		var apiErr client.ApiCallError
		if !errors.As(err, &apiErr) || !strings.Contains(err.Error(), "injected status 503") {
			t.Fatalf("request %d: err = %v, want injected 503 ApiCallError", i, err)
		}
		if i == 0 {
			if f := s.Faults(); len(f) != 1 || f[0].Remaining != 1 || f[0].Hits != 1 {
				t.Errorf("after one hit: %+v", f)
			}
		}
	}
	nodes, err := c.Nodes.GetAll(tctx(t))
	must(t, err)
	if len(nodes) != 10 {
		t.Errorf("after the fault: %d nodes", len(nodes))
	}
	if len(s.Faults()) != 0 {
		t.Errorf("used-up fault still active: %+v", s.Faults())
	}
}

func TestStatusFaultOnlyMatchesItsMethodAndPrefixAndBlocksTheMutation(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-1", Diskful: []string{"a"}}))
	_, err := s.InjectFault(Fault{Kind: FaultStatus, Method: "put", PathPrefix: "/v1/resource-definitions/"})
	must(t, err)

	err = c.ResourceDefinitions.ModifyVolumeDefinition(tctx(t), "pvc-1", 0, client.VolumeDefinitionModify{
		GenericPropsModify: client.GenericPropsModify{OverrideProps: map[string]string{"Aux/x": "1"}},
	})
	if !errors.As(err, new(client.ApiCallError)) {
		t.Fatalf("PUT err = %v, want ApiCallError", err)
	}
	props, err := s.VDProps("pvc-1", 0)
	must(t, err)
	if len(props) != 0 {
		t.Errorf("failed PUT changed props: %v", props)
	}
	if _, err := c.ResourceDefinitions.Get(tctx(t), "pvc-1"); err != nil {
		t.Errorf("GET hit a PUT fault: %v", err)
	}
	if _, err := c.Nodes.GetAll(tctx(t)); err != nil {
		t.Errorf("other prefix hit the fault: %v", err)
	}
	status, _ := rawDo(t, s, "PUT", "/v1/resource-definitions/pvc-1", `{}`)
	if status != 500 {
		t.Errorf("default injected status = %d, want 500", status)
	}
	s.ClearFaults()
	must(t, c.ResourceDefinitions.Modify(tctx(t), "pvc-1", client.GenericPropsModify{}))
}

func TestDelayFaultSlowsButAnswers(t *testing.T) {
	s, c := startSim(t, Options{})
	tenNodes(t, s)
	_, err := s.InjectFault(Fault{Kind: FaultDelay, Delay: 300 * time.Millisecond, Count: 1})
	must(t, err)
	start := time.Now()
	nodes, err := c.Nodes.GetAll(tctx(t))
	must(t, err)
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("answered after %v, want >= 300ms", d)
	}
	if len(nodes) != 10 {
		t.Errorf("delayed answer has %d nodes", len(nodes))
	}
	// A count-1 fault is used up: it is no longer listed.
	if left := s.Faults(); len(left) != 0 {
		t.Errorf("count-1 delay still armed after one request: %+v", left)
	}
}

func TestCloseFaultDropsTheConnection(t *testing.T) {
	s, c := startSim(t, Options{})
	tenNodes(t, s)
	id, err := s.InjectFault(Fault{Kind: FaultClose, PathPrefix: "/v1/view/resources"})
	must(t, err)
	_, err = c.Resources.GetResourceView(tctx(t))
	if err == nil {
		t.Fatal("request on a dropped connection succeeded")
	}
	var apiErr client.ApiCallError
	if errors.As(err, &apiErr) {
		t.Errorf("got an API answer, want a transport error: %v", err)
	}
	if f := s.Faults(); len(f) != 1 || f[0].Hits < 1 {
		t.Errorf("fault bookkeeping = %+v", f)
	}
	if !s.ClearFault(id) || s.ClearFault(id) {
		t.Error("ClearFault should report true once, then false")
	}
	_, err = c.Resources.GetResourceView(tctx(t))
	must(t, err)
}

func TestTruncateAndInvalidJSONFaultsBreakDecoding(t *testing.T) {
	s, c := startSim(t, Options{})
	tenNodes(t, s)
	_, err := s.InjectFault(Fault{Kind: FaultTruncate, PathPrefix: "/v1/nodes", Count: 1})
	must(t, err)
	_, err = c.Nodes.GetAll(tctx(t))
	if err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Errorf("truncated list: err = %v, want unexpected EOF", err)
	}
	status, body := func() (int, string) {
		_, err := s.InjectFault(Fault{Kind: FaultTruncate, Count: 1})
		must(t, err)
		return rawGet(t, s, "/v1/nodes")
	}()
	if status != 200 || json.Valid([]byte(body)) || !strings.HasPrefix(body, `[{"name":"n0"`) {
		t.Errorf("truncated body: status %d, %q", status, body)
	}

	_, err = s.InjectFault(Fault{Kind: FaultInvalidJSON, Count: 1})
	must(t, err)
	_, err = c.ResourceDefinitions.GetAll(tctx(t), client.RDGetAllRequest{})
	var syn *json.SyntaxError
	if !errors.As(err, &syn) {
		t.Errorf("invalid JSON: err = %v (%T), want *json.SyntaxError", err, err)
	}
	nodes, err := c.Nodes.GetAll(tctx(t))
	must(t, err)
	if len(nodes) != 10 {
		t.Errorf("after faults: %d nodes", len(nodes))
	}
}

func TestPartialFaultDropsAFractionOfListEntries(t *testing.T) {
	s, c := startSim(t, Options{})
	tenNodes(t, s)
	for i := 0; i < 10; i++ {
		must(t, s.CreateVolume(VolumeSpec{Name: fmt.Sprintf("pvc-%d", i), Diskful: []string{fmt.Sprintf("n%d", i)}}))
	}
	_, err := s.InjectFault(Fault{Kind: FaultPartial, Fraction: 0.3})
	must(t, err)

	nodes, err := c.Nodes.GetAll(tctx(t))
	must(t, err)
	if len(nodes) != 7 {
		t.Errorf("nodes with 30%% dropped: %d, want 7", len(nodes))
	}
	rds, err := c.ResourceDefinitions.GetAll(tctx(t), client.RDGetAllRequest{WithVolumeDefinitions: true})
	must(t, err)
	if len(rds) != 7 {
		t.Errorf("resource definitions: %d, want 7", len(rds))
	}
	view, err := c.Resources.GetResourceView(tctx(t))
	must(t, err)
	if len(view) != 7 {
		t.Errorf("resources: %d, want 7", len(view))
	}
	// Single objects are not lists: untouched, and the fault is not used.
	if _, err := c.Nodes.Get(tctx(t), "n9"); err != nil {
		t.Errorf("single node under a partial fault: %v", err)
	}
	if f := s.Faults(); len(f) != 1 || f[0].Hits != 3 {
		t.Errorf("partial fault hits = %+v, want 3", f)
	}
	s.ClearFaults()
	nodes, err = c.Nodes.GetAll(tctx(t))
	must(t, err)
	if len(nodes) != 10 {
		t.Errorf("after clear: %d nodes", len(nodes))
	}
}

func TestFaultValidation(t *testing.T) {
	s := New(Options{})
	for _, f := range []Fault{
		{Kind: "explode"},
		{Kind: FaultStatus, Status: 200},
		{Kind: FaultDelay},
		{Kind: FaultPartial, Fraction: 1.5},
		{Kind: FaultClose, Count: -1},
	} {
		if _, err := s.InjectFault(f); err == nil {
			t.Errorf("fault %+v accepted", f)
		}
	}
}

func TestThinDropsEvenlyAndExactly(t *testing.T) {
	items := make([]int, 100)
	for i := range items {
		items[i] = i
	}
	for _, tc := range []struct {
		f    float64
		keep int
	}{{0, 100}, {0.1, 90}, {0.5, 50}, {0.33, 67}, {1, 0}} {
		got := thin(items, tc.f)
		if len(got) != tc.keep {
			t.Errorf("thin(%v) kept %d, want %d", tc.f, len(got), tc.keep)
		}
	}
	if got := thin(items, 0.5); got[0] != 0 || got[1] != 2 {
		t.Errorf("thin(0.5) kept %v..., want every other item", got[:2])
	}
}

package linstorsim

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/LINBIT/golinstor/client"
)

// ctl calls the control API and decodes the JSON answer into out (if any).
func ctl(t *testing.T, s *Sim, method, path, body string, wantStatus int, out any) {
	t.Helper()
	status, resp := rawDo(t, s, method, path, body)
	if status != wantStatus {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, wantStatus, resp)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(resp), out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, resp, err)
		}
	}
}

func TestControlAPIDrivesAScenario(t *testing.T) {
	s, c := startSim(t, Options{})
	for _, n := range []string{"a", "b", "c"} {
		ctl(t, s, "POST", "/_sim/nodes", `{"name":"`+n+`","storagePools":[{"name":"thin"}]}`, 201, nil)
	}
	ctl(t, s, "PUT", "/_sim/nodes/c/props", `{"set":{"Aux/topology/zone":"z9"}}`, 200, nil)
	var nprops map[string]string
	ctl(t, s, "GET", "/_sim/nodes/c/props", "", 200, &nprops)
	if nprops["Aux/topology/zone"] != "z9" || nprops["Aux/topology/linbit.com/hostname"] != "c" {
		t.Errorf("node props = %v", nprops)
	}
	ctl(t, s, "POST", "/_sim/volumes", `{"name":"pvc-1","sizesKiB":[2048],"diskful":["a","b"],"diskless":["c"],"props":{"Aux/x":"1"}}`, 201, nil)
	ctl(t, s, "PUT", "/_sim/volumes/pvc-1/volume-definitions/0/props", `{"set":{"Aux/saved":"pv"}}`, 200, nil)
	var vprops map[string]string
	ctl(t, s, "GET", "/_sim/volumes/pvc-1/volume-definitions/0/props", "", 200, &vprops)
	if vprops["Aux/saved"] != "pv" {
		t.Errorf("vd props = %v", vprops)
	}
	ctl(t, s, "PUT", "/_sim/volumes/pvc-1/props", `{"delete":["Aux/x"]}`, 200, nil)
	ctl(t, s, "POST", "/_sim/volumes/pvc-1/move", `{"from":"a","to":"c"}`, 409, nil) // c holds a diskless replica
	ctl(t, s, "DELETE", "/_sim/volumes/pvc-1/replicas/c", "", 200, nil)
	ctl(t, s, "POST", "/_sim/volumes/pvc-1/move", `{"from":"a","to":"c"}`, 200, nil)
	ctl(t, s, "PUT", "/_sim/volumes/pvc-1/replicas/b", `{"flags":["FAILED_DEPLOYMENT"],"healthy":false}`, 200, nil)
	ctl(t, s, "POST", "/_sim/volumes/pvc-1/replicas", `{"node":"a","kind":"tiebreaker"}`, 201, nil)

	var vol struct {
		Name     string            `json:"name"`
		Replicas []Replica         `json:"replicas"`
		Props    map[string]string `json:"props"`
	}
	ctl(t, s, "GET", "/_sim/volumes/pvc-1", "", 200, &vol)
	if len(vol.Replicas) != 3 || len(vol.Props) != 0 {
		t.Fatalf("volume = %+v", vol)
	}
	byNode := map[string]Replica{}
	for _, r := range vol.Replicas {
		byNode[r.Node] = r
	}
	if byNode["a"].Diskful || !byNode["c"].Diskful || byNode["b"].Healthy || byNode["b"].Flags[0] != "FAILED_DEPLOYMENT" {
		t.Errorf("replicas = %+v", vol.Replicas)
	}

	// a and b hold pvc-1, so evacuating c finds no target until d exists.
	ctl(t, s, "POST", "/_sim/nodes/c/evacuate", "", 500, nil)
	ctl(t, s, "POST", "/_sim/nodes", `{"name":"d","storagePools":[{"name":"thin"}]}`, 201, nil)
	var moves []Move
	ctl(t, s, "POST", "/_sim/nodes/c/evacuate", "", 200, &moves)
	if len(moves) != 1 || moves[0] != (Move{ResourceDefinition: "pvc-1", From: "c", To: "d"}) {
		t.Errorf("moves = %+v", moves)
	}

	// Faults over HTTP, with the delay as a duration string.
	var created map[string]int
	ctl(t, s, "POST", "/_sim/faults", `{"kind":"status","status":503,"pathPrefix":"/v1/nodes","count":1}`, 201, &created)
	ctl(t, s, "POST", "/_sim/faults", `{"kind":"delay","delay":"10ms","pathPrefix":"/v1/view"}`, 201, nil)
	var faults []map[string]any
	ctl(t, s, "GET", "/_sim/faults", "", 200, &faults)
	if len(faults) != 2 || faults[1]["delay"] != "10ms" || faults[0]["status"] != float64(503) {
		t.Errorf("faults = %v", faults)
	}
	if _, err := c.Nodes.GetAll(tctx(t)); err == nil {
		t.Error("injected 503 not applied")
	}
	ctl(t, s, "DELETE", "/_sim/faults/999", "", 404, nil)
	ctl(t, s, "DELETE", "/_sim/faults", "", 200, nil)
	ctl(t, s, "POST", "/_sim/faults", `{"kind":"bogus"}`, 400, nil)

	var counters struct {
		Total  int64            `json:"total"`
		Counts map[string]int64 `json:"counts"`
	}
	ctl(t, s, "GET", "/_sim/counters", "", 200, &counters)
	if counters.Total != 1 || counters.Counts["GET /v1/nodes"] != 1 {
		t.Errorf("counters = %+v", counters)
	}
	ctl(t, s, "DELETE", "/_sim/counters", "", 200, nil)
	ctl(t, s, "GET", "/_sim/counters", "", 200, &counters)
	if counters.Total != 0 {
		t.Errorf("after reset total = %d", counters.Total)
	}

	must(t, c.ResourceDefinitions.Delete(tctx(t), "pvc-1"))
	var dels []Deletion
	ctl(t, s, "GET", "/_sim/deletions?volumesOnly=true", "", 200, &dels)
	if len(dels) != 1 || dels[0].Kind != DeletedResourceDefinition || dels[0].Via != ViaAPI {
		t.Errorf("volume deletions = %+v", dels)
	}
	ctl(t, s, "DELETE", "/_sim/deletions", "", 200, nil)
	ctl(t, s, "GET", "/_sim/deletions", "", 200, &dels)
	if len(dels) != 0 {
		t.Errorf("after reset: %+v", dels)
	}

	ctl(t, s, "DELETE", "/_sim/nodes/a", "", 200, nil)
	ctl(t, s, "GET", "/_sim/volumes/nope", "", 404, nil)
	ctl(t, s, "POST", "/_sim/volumes", `{"name":"x","unknownField":1}`, 400, nil)
	ctl(t, s, "GET", "/_sim/nothing", "", 404, nil)
}

func TestControlAPILoadsScenarioYAMLAndGenerates(t *testing.T) {
	s, c := startSim(t, Options{})
	yaml := `
nodes:
  - name: a
    props: {Aux/topology/topology.kubernetes.io/zone: z1}
    storagePools: [{name: thin, totalKiB: 1048576000}]
  - name: b
    storagePools: [{name: thin}]
resourceGroups:
  - {name: rg1, placeCount: 2, storagePools: [thin]}
volumes:
  - name: pvc-1
    resourceGroup: rg1
    diskful: [a, b]
    vdProps: {0: {Aux/k: v}}
`
	ctl(t, s, "POST", "/_sim/scenario", yaml, 200, nil)
	ctl(t, s, "POST", "/_sim/generate", `{"nodes":2,"nodePrefix":"g-","volumes":3,"replicas":1}`, 200, nil)
	var info map[string]any
	ctl(t, s, "GET", "/_sim/info", "", 200, &info)
	if info["nodes"] != float64(4) || info["volumes"] != float64(4) {
		t.Errorf("info = %v", info)
	}
	rds, err := c.ResourceDefinitions.GetAll(tctx(t), client.RDGetAllRequest{WithVolumeDefinitions: true})
	must(t, err)
	if rds[0].Name != "pvc-00000000" || rds[3].Name != "pvc-1" || rds[3].ResourceGroupName != "rg1" || rds[3].VolumeDefinitions[0].Props["Aux/k"] != "v" {
		t.Errorf("rds = %+v", rds)
	}
	var status map[string]string
	ctl(t, s, "POST", "/_sim/scenario", "volumes: [{name: pvc-2, diskful: [zz]}]", 404, &status)
	if !strings.Contains(status["error"], "zz") {
		t.Errorf("error = %v", status)
	}
	ctl(t, s, "POST", "/_sim/scenario", "volumez: []", 400, nil)
}

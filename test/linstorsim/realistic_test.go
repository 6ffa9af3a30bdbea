package linstorsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

// realisticSim is a realistic simulator with n volumes of three replicas on
// ten nodes, and a clock the test moves.
func realisticSim(t *testing.T, n int, window time.Duration) (*Sim, *client.Client, *fakeClock) {
	t.Helper()
	s, c := startSim(t, Options{Realistic: true, DeleteWindow: window})
	clock := &fakeClock{t: time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)}
	s.st.now = clock.now
	must(t, s.Generate(GenerateSpec{Nodes: 10, Zones: 2, Volumes: n, Replicas: 3}))
	return s, c, clock
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// placement is what decides a volume's accessible topology: each resource's
// name, node and flags.
func placement(t *testing.T, body string) []string {
	t.Helper()
	var res []client.ResourceWithVolumes
	must(t, json.Unmarshal([]byte(body), &res))
	out := make([]string, len(res))
	for i, r := range res {
		out[i] = fmt.Sprintf("%s@%s%v", r.Name, r.NodeName, r.Flags)
	}
	return out
}

// In realistic mode the view's bytes change from one request to the next,
// while names, nodes and flags stay as they are; outside it, every answer
// is the same bytes.
func TestRealisticViewChangesBetweenRequestsButNotThePlacement(t *testing.T) {
	s, _, _ := realisticSim(t, 100, 0)
	var bodies []string
	for i := 0; i < 5; i++ {
		code, body := rawGet(t, s, "/v1/view/resources")
		if code != http.StatusOK {
			t.Fatalf("view: %d %s", code, body)
		}
		bodies = append(bodies, body)
	}
	for i := 1; i < len(bodies); i++ {
		if bodies[i] == bodies[i-1] {
			t.Errorf("requests %d and %d got the same bytes", i-1, i)
		}
		if got, want := placement(t, bodies[i]), placement(t, bodies[0]); !slices.Equal(got, want) {
			t.Errorf("request %d: the placement changed:\n got %v\nwant %v", i, got, want)
		}
	}

	plain, _ := startSim(t, Options{})
	must(t, plain.Generate(GenerateSpec{Nodes: 10, Volumes: 20, Replicas: 3}))
	_, a := rawGet(t, plain, "/v1/view/resources")
	_, b := rawGet(t, plain, "/v1/view/resources")
	if a != b {
		t.Error("outside realistic mode two answers differ")
	}
}

// Every field a realistic answer carries is either golinstor's or one
// linstor-server sends beyond it (replication_states in a volume's state,
// created_at in a report), with linstor-server's shape.
func TestRealisticAnswersKeepGolinstorAndLinstorServerShapes(t *testing.T) {
	s, c, _ := realisticSim(t, 60, 0)
	must(t, s.SetNodeOnline("node-003", false))
	for _, path := range []string{"/v1/view/resources", "/v1/resource-definitions/pvc-00000001/resources", "/v1/resource-definitions/pvc-00000001/resources/node-002"} {
		_, body := rawGet(t, s, path)
		var items []map[string]any
		if bytes.HasPrefix([]byte(body), []byte("[")) {
			must(t, json.Unmarshal([]byte(body), &items))
		} else {
			var one map[string]any
			must(t, json.Unmarshal([]byte(body), &one))
			items = []map[string]any{one}
		}
		for _, it := range items {
			vols, _ := it["volumes"].([]any)
			for _, v := range vols {
				checkServerOnlyFields(t, v.(map[string]any))
			}
			strict, err := json.Marshal(it)
			must(t, err)
			dec := json.NewDecoder(bytes.NewReader(strict))
			dec.DisallowUnknownFields()
			var r client.ResourceWithVolumes
			if err := dec.Decode(&r); err != nil {
				t.Fatalf("%s: %v in %s", path, err, strict)
			}
		}
	}
	// And golinstor, as the sidecar and LINSTOR CSI use it, reads them.
	if _, err := c.Resources.GetResourceView(tctx(t)); err != nil {
		t.Fatal(err)
	}
}

// checkServerOnlyFields checks, then removes, the volume fields golinstor
// does not know.
func checkServerOnlyFields(t *testing.T, vol map[string]any) {
	t.Helper()
	if st, ok := vol["state"].(map[string]any); ok {
		if rs, ok := st["replication_states"]; ok {
			for peer, v := range rs.(map[string]any) {
				s := v.(map[string]any)
				if _, ok := s["replication_state"].(string); !ok {
					t.Errorf("replication state towards %s without replication_state: %v", peer, s)
				}
				for k, x := range s {
					if _, num := x.(float64); k != "replication_state" && (k != "done_percentage" || !num) {
						t.Errorf("replication state towards %s has %s=%v", peer, k, x)
					}
				}
			}
			delete(st, "replication_states")
		}
	}
	reports, _ := vol["reports"].([]any)
	for _, r := range reports {
		rep := r.(map[string]any)
		at, _ := rep["created_at"].(string)
		if _, err := time.Parse(time.RFC3339, at); err != nil {
			t.Errorf("report created_at %q: %v", at, err)
		}
		delete(rep, "created_at")
	}
}

// stateCounts counts the disk states of diskful replicas over n requests.
func stateCounts(t *testing.T, c *client.Client, n int) (map[string]int, []client.ResourceWithVolumes) {
	t.Helper()
	counts := map[string]int{}
	var last []client.ResourceWithVolumes
	for i := 0; i < n; i++ {
		res, err := c.Resources.GetResourceView(tctx(t))
		must(t, err)
		for _, r := range res {
			if !slices.Contains(r.Flags, lapiconst.FlagDiskless) {
				counts[r.Volumes[0].State.DiskState]++
			}
		}
		last = res
	}
	return counts, last
}

// Some replicas are Outdated or Failed for good, some resync for a while;
// every volume keeps a replica that is up to date (or catching up).
func TestRealisticDisksAreSometimesOutdatedOrFailed(t *testing.T) {
	_, c, _ := realisticSim(t, 400, 0)
	counts, res := stateCounts(t, c, 3)
	for _, want := range []string{diskUpToDate, diskOutdated, diskFailed, diskResyncing} {
		if counts[want] == 0 {
			t.Errorf("no %s replica in %v", want, counts)
		}
	}
	if counts[diskUpToDate] < 9*(counts[diskOutdated]+counts[diskFailed]) {
		t.Errorf("too few healthy replicas: %v", counts)
	}
	good := map[string]bool{}
	for _, r := range res {
		if s := r.Volumes[0].State.DiskState; s == diskUpToDate || s == diskResyncing {
			good[r.Name] = true
		}
	}
	if len(good) != 400 {
		t.Errorf("%d of 400 volumes have a replica up to date or resyncing", len(good))
	}
}

// A removed replica goes through LINSTOR's window: DRBD_DELETE, then DELETE
// as well, then gone; it no longer counts as a diskful replica from the
// start, and creating it again undoes the deletion.
func TestRealisticDeleteWindow(t *testing.T) {
	s, _, clock := realisticSim(t, 3, 10*time.Second)
	flagsOn := func(node string) []string {
		t.Helper()
		for _, r := range resourcesOf(t, s, "pvc-00000000") {
			if r.NodeName == node {
				for _, v := range r.Volumes {
					if !slices.Equal(v.Flags, volumeFlagsFor(r.Flags)) {
						t.Errorf("volume flags %v with resource flags %v", v.Flags, r.Flags)
					}
				}
				return r.Flags
			}
		}
		return nil
	}
	must(t, s.DeleteReplica("pvc-00000000", "node-000"))
	if got := flagsOn("node-000"); !slices.Equal(got, []string{lapiconst.FlagDrbdDelete}) {
		t.Fatalf("just deleted: flags %v, want [DRBD_DELETE]", got)
	}
	if nodes, _ := s.DiskfulNodes("pvc-00000000"); !slices.Equal(nodes, []string{"node-001", "node-002"}) {
		t.Errorf("diskful nodes in the window: %v", nodes)
	}
	clock.add(5 * time.Second)
	if got := flagsOn("node-000"); !slices.Equal(got, []string{lapiconst.FlagDelete, lapiconst.FlagDrbdDelete}) {
		t.Fatalf("half way: flags %v, want [DELETE DRBD_DELETE]", got)
	}
	clock.add(5 * time.Second)
	if got := flagsOn("node-000"); got != nil {
		t.Fatalf("after the window the replica is still listed with %v", got)
	}

	// A move: the new replica at once, the old one through the window.
	must(t, s.MoveReplica("pvc-00000001", "node-001", "node-005"))
	reps, err := s.Replicas("pvc-00000001")
	must(t, err)
	if got := names(reps, func(r Replica) string { return fmt.Sprint(r.Node, r.Flags) }); !slices.Equal(got,
		[]string{"node-001[DRBD_DELETE]", "node-002[]", "node-003[]", "node-005[]"}) {
		t.Errorf("after a move: %v", got)
	}
	// Moving back within the window keeps the old replica.
	must(t, s.MoveReplica("pvc-00000001", "node-005", "node-001"))
	reps, err = s.Replicas("pvc-00000001")
	must(t, err)
	if got := names(reps, func(r Replica) string { return fmt.Sprint(r.Node, r.Flags) }); !slices.Equal(got,
		[]string{"node-001[]", "node-002[]", "node-003[]", "node-005[DRBD_DELETE]"}) {
		t.Errorf("after moving back: %v", got)
	}
	// Creating a replica that is being deleted undoes the deletion.
	must(t, s.DeleteReplica("pvc-00000002", "node-003"))
	must(t, s.AddReplica("pvc-00000002", "node-003", Diskful))
	clock.add(time.Minute)
	if nodes, _ := s.DiskfulNodes("pvc-00000002"); !slices.Equal(nodes, []string{"node-002", "node-003", "node-004"}) {
		t.Errorf("re-created replica: diskful nodes %v", nodes)
	}
	if nodes, _ := s.DiskfulNodes("pvc-00000001"); !slices.Equal(nodes, []string{"node-001", "node-002", "node-003"}) {
		t.Errorf("after the window: diskful nodes %v", nodes)
	}
}

// resourcesOf is the per-definition resource list with volumes, as the
// simulator sends it.
func resourcesOf(t *testing.T, s *Sim, rd string) []client.ResourceWithVolumes {
	t.Helper()
	_, body := rawGet(t, s, "/v1/resource-definitions/"+rd+"/resources")
	var res []client.ResourceWithVolumes
	must(t, json.Unmarshal([]byte(body), &res))
	return res
}

func volumeFlagsFor(rscFlags []string) []string {
	switch {
	case slices.Contains(rscFlags, lapiconst.FlagDelete):
		return []string{lapiconst.FlagDelete, lapiconst.FlagDrbdDelete}
	case slices.Contains(rscFlags, lapiconst.FlagDrbdDelete):
		return []string{lapiconst.FlagDrbdDelete}
	}
	return nil
}

// linstor-server's view leaves out resources without volumes; its
// per-definition list does not.
func TestRealisticViewLeavesOutResourcesWithoutVolumes(t *testing.T) {
	s, c, _ := realisticSim(t, 1, 0)
	must(t, s.CreateVolume(VolumeSpec{Name: "novols", SizesKiB: []uint64{1024}, Diskful: []string{"node-001"}}))
	must(t, s.st.deleteVD("novols", 0, simActor))
	view, err := c.Resources.GetResourceView(tctx(t))
	must(t, err)
	for _, r := range view {
		if r.Name == "novols" {
			t.Errorf("view lists %s on %s", r.Name, r.NodeName)
		}
	}
	list, err := c.Resources.GetAll(tctx(t), "novols")
	must(t, err)
	if len(list) != 1 {
		t.Errorf("per-definition list: %d resources, want 1", len(list))
	}
}

// A replica on a node the controller cannot reach has no running state, no
// allocated size, and a report made at the request's time.
func TestRealisticOfflineNodeReportsNotConnected(t *testing.T) {
	s, _, clock := realisticSim(t, 1, 0)
	must(t, s.SetNodeOnline("node-001", false))
	at := func() string {
		for _, r := range resourcesOf(t, s, "pvc-00000000") {
			if r.NodeName != "node-001" {
				if r.State == nil || r.LayerObject.Drbd.Connections["node-001"].Connected {
					t.Errorf("peer %s: state %v, connection to the offline node %v", r.NodeName, r.State, r.LayerObject.Drbd.Connections)
				}
				continue
			}
			v := r.Volumes[0]
			if r.State != nil || v.State.DiskState != "" || v.AllocatedSizeKib != 0 || len(v.Reports) != 1 {
				t.Fatalf("offline replica: state %v, volume %+v", r.State, v)
			}
		}
		_, body := rawGet(t, s, "/v1/resource-definitions/pvc-00000000/resources/node-001")
		var raw struct {
			Volumes []struct {
				Reports []struct {
					CreatedAt string `json:"created_at"`
				} `json:"reports"`
			} `json:"volumes"`
		}
		must(t, json.Unmarshal([]byte(body), &raw))
		return raw.Volumes[0].Reports[0].CreatedAt
	}
	first := at()
	clock.add(1500 * time.Millisecond)
	if second := at(); second == first {
		t.Errorf("report time %s did not move with the clock", first)
	}
}

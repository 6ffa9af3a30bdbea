package linstor_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	lapi "github.com/LINBIT/golinstor/client"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fakebed"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/linstor"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
)

func sameView(t *testing.T, what string, got, want *decide.View) {
	t.Helper()
	g, w := *got, *want
	g.FetchedAt, w.FetchedAt, g.Unchanged, w.Unchanged = time.Time{}, time.Time{}, false, false
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s: view differs from golinstor's\n got %+v\nwant %+v", what, g, w)
	}
}

// decisionView is what decisions read of a view: node topology, the
// definitions' skip and saved-state properties, and where the replicas are
// and whether they count as diskful.
func decisionView(v *decide.View) map[string]any {
	rds := map[string]any{}
	for name, rd := range v.RDs {
		var replicas []string
		for _, r := range rd.Resources {
			replicas = append(replicas, fmt.Sprintf("%s/%s diskful=%v", r.Name, r.Node, r.Diskful()))
		}
		slices.Sort(replicas)
		rds[name] = []any{rd.Skip, rd.LegacySaved, rd.Volumes, replicas}
	}
	return map[string]any{"nodes": v.Nodes, "rds": rds}
}

// The trimmed decoding sees exactly what golinstor's full decoding sees:
// nodes and their topology, saved-state properties, volume
// definitions, diskless and diskful replicas; against a LINSTOR whose
// answers never repeat, too.
func TestBulkFetchSeesWhatGolinstorSees(t *testing.T) {
	realistic, _ := fakebed.OnSim(t, linstorsim.Options{Realistic: true})
	for name, b := range map[string]*fakebed.Bed{"fakelinstor": fakebed.New(t), "realistic simulator": realistic} {
		t.Run(name, func(t *testing.T) {
			b.AddVolume("vol-a", 2, []string{"n1", "n2"}, []string{"n1", "n2"})
			b.AddVolume("vol-b", 1, []string{"n3"}, []string{"n4"})
			b.Must(b.LC.Resources.Create(context.Background(), lapi.ResourceCreate{Resource: lapi.Resource{Name: "vol-b", NodeName: "n4", Flags: []string{"DISKLESS", "DRBD_DISKLESS"}}}))
			b.SetVDProp("vol-b", 0, decide.SavedPVKey, `{"metadata":{"name":"pv-vol-b-0"}}`)

			bulk, _ := b.BulkLinstor(0)
			got, err := bulk.Fetch(context.Background())
			b.Must(err)
			want, err := b.Linstor.Fetch(context.Background())
			b.Must(err)
			sameView(t, "first fetch", got, want)
			if got.Unchanged {
				t.Fatal("first fetch reported unchanged")
			}
			if len(got.RDs["vol-a"].Volumes) != 2 || got.RDs["vol-b"].Volumes[0] == "" || len(got.RDs["vol-b"].Resources) != 2 {
				t.Fatalf("trimmed view lost data: %+v %+v", got.RDs["vol-a"], got.RDs["vol-b"])
			}
		})
	}
}

// Every fetch is one request per list, whether anything changed or not, so
// no decision rests on data older than one cycle and a change costs nothing
// more. Nothing changed: the view is the last one, marked unchanged.
func TestBulkFetchSendsOneRequestPerList(t *testing.T) {
	b := fakebed.New(t)
	b.AddVolume("vol-a", 1, []string{"n1", "n2"}, []string{"n1", "n2"})
	bulk, count := b.BulkLinstor(0)
	ctx := context.Background()
	fetch := func(what string, wantUnchanged bool) *decide.View {
		t.Helper()
		v, err := bulk.Fetch(ctx)
		b.Must(err)
		if n := count.N.Swap(0); n != 3 {
			t.Fatalf("%s: %d requests, want 3", what, n)
		}
		if v.Unchanged != wantUnchanged {
			t.Fatalf("%s: Unchanged=%v", what, v.Unchanged)
		}
		want, err := b.Linstor.Fetch(ctx)
		b.Must(err)
		sameView(t, what, v, want)
		return v
	}
	first := fetch("first fetch", false)
	second := fetch("nothing changed", true)
	if !second.FetchedAt.After(first.FetchedAt) {
		t.Fatalf("unchanged fetch: FetchedAt %v not after %v", second.FetchedAt, first.FetchedAt)
	}
	b.SetVDProp("vol-a", 0, decide.SavedPVKey, `{"metadata":{"name":"pv-vol-a-0"}}`)
	if v := fetch("saved state written", false); v.RDs["vol-a"].Volumes[0] == "" {
		t.Fatal("saved state not seen")
	}
	b.Must(b.LC.Resources.Create(ctx, lapi.ResourceCreate{Resource: lapi.Resource{Name: "vol-a", NodeName: "n3"}}))
	if v := fetch("replica added", false); len(v.RDs["vol-a"].Resources) != 3 {
		t.Fatalf("new replica not seen: %v", v.RDs["vol-a"].Resources)
	}
	fetch("nothing changed since", true)
}

// Against a LINSTOR whose answers differ in every request (allocated sizes,
// DRBD states, in-use, report times), a view is unchanged as long as nothing
// a decision reads changed, and changed as soon as something did: a
// resource, a flag that decides whether it counts, a node or a property.
func TestBulkFetchUnchangedMeansWhatDecisionsReadIsUnchanged(t *testing.T) {
	b, sim := fakebed.OnSim(t, linstorsim.Options{Realistic: true, DeleteWindow: -1})
	b.AddVolume("vol-a", 2, []string{"n1", "n2"}, []string{"n1", "n2"})
	b.AddVolume("vol-b", 1, []string{"n2", "n3"}, []string{"n2", "n3"})
	bulk, count := b.BulkLinstor(0)
	ctx := context.Background()
	view := func() []byte {
		resp, err := http.Get(sim.URL() + "/v1/view/resources")
		b.Must(err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		b.Must(err)
		return body
	}
	if bytes.Equal(view(), view()) {
		t.Fatal("the simulator's view did not change between requests: not realistic")
	}
	if v, err := bulk.Fetch(ctx); err != nil || v.Unchanged {
		t.Fatalf("first fetch: %v, unchanged %v", err, v != nil && v.Unchanged)
	}
	setRDProp := func(key, value string) func() error {
		return func() error { return sim.SetRDProps("vol-a", map[string]string{key: value}) }
	}
	for _, tc := range []struct {
		name    string
		change  func() error
		changed bool
	}{
		{"nothing but LINSTOR's running state", func() error { return nil }, false},
		{"a replica fails and is in use", func() error {
			if err := sim.SetReplicaHealthy("vol-a", "n1", false); err != nil {
				return err
			}
			return sim.SetReplicaInUse("vol-b", "n3", true)
		}, false},
		{"a flag that does not change what counts", func() error { return sim.SetReplicaFlags("vol-a", "n2", "RESIZE") }, false},
		{"a property decisions do not read", setRDProp("Aux/other", "x"), false},
		{"a node property outside the namespace", func() error { return sim.SetNodeProps("n4", map[string]string{"Aux/other/rack": "r1"}) }, false},
		{"a replica added", func() error { return sim.AddReplica("vol-a", "n3", linstorsim.Diskful) }, true},
		{"a replica flagged DELETE", func() error { return sim.SetReplicaFlags("vol-a", "n3", "DELETE") }, true},
		{"a replica flagged DRBD_DELETE", func() error { return sim.SetReplicaFlags("vol-b", "n2", "DRBD_DELETE") }, true},
		{"a replica removed", func() error { return sim.DeleteReplica("vol-a", "n3") }, true},
		{"a replica moved", func() error { return sim.MoveReplica("vol-a", "n2", "n4") }, true},
		{"a diskless replica added", func() error { return sim.AddReplica("vol-b", "n1", linstorsim.TieBreaker) }, true},
		{"a node topology property", func() error {
			return sim.SetNodeProps("n1", map[string]string{linstor.NamespaceTopology + "/topology.kubernetes.io/zone": "z-moved"})
		}, true},
		{"a node added", func() error { return sim.AddNode("n5", nil, linstorsim.StoragePool{Name: "thin"}) }, true},
		{"the skip property", setRDProp(decide.SkipRDKey, "yes"), true},
		{"saved state on the resource definition", setRDProp(decide.SavedPVKey, `{"metadata":{"name":"x"}}`), true},
		{"saved state on a volume definition", func() error {
			return sim.SetVDProps("vol-b", 0, map[string]string{decide.SavedPVKey: `{"metadata":{"name":"y"}}`})
		}, true},
		{"a volume definition added", func() error {
			return b.LC.ResourceDefinitions.CreateVolumeDefinition(ctx, "vol-b", lapi.VolumeDefinitionCreate{VolumeDefinition: lapi.VolumeDefinition{SizeKib: 1024}})
		}, true},
		{"a volume removed", func() error { return sim.DeleteVolume("vol-b") }, true},
		{"nothing since", func() error { return nil }, false},
	} {
		b.Must(tc.change())
		count.N.Store(0)
		got, err := bulk.Fetch(ctx)
		b.Must(err)
		if n := count.N.Load(); n != 3 {
			t.Errorf("%s: %d requests, want 3", tc.name, n)
		}
		if got.Unchanged == tc.changed {
			t.Errorf("%s: Unchanged=%v, want %v", tc.name, got.Unchanged, !tc.changed)
		}
		want, err := b.Linstor.Fetch(ctx)
		b.Must(err)
		if g, w := decisionView(got), decisionView(want); !reflect.DeepEqual(g, w) {
			t.Fatalf("%s: decisions would read\n%v\nwhere golinstor's full decoding gives\n%v", tc.name, g, w)
		}
	}
}

// A view is reported unchanged for maxReuse at most in a row; then once as
// changed, so the loop decides afresh.
func TestBulkFetchReportsChangedAfterMaxReuse(t *testing.T) {
	b := fakebed.New(t)
	b.AddVolume("vol-a", 1, []string{"n1"}, []string{"n1"})
	bulk, _ := b.BulkLinstor(time.Nanosecond)
	for i := 0; i < 2; i++ {
		v, err := bulk.Fetch(context.Background())
		b.Must(err)
		if v.Unchanged {
			t.Fatalf("fetch %d reported unchanged past maxReuse", i)
		}
	}
}

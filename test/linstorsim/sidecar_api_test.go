package linstorsim

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

// These tests exercise, through golinstor v0.64.1, every call the sidecar
// makes per cycle and to save or clear its state.

func TestNodesGetAllReturnsSortedNodesWithPiraeusTopology(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)

	nodes, err := c.Nodes.GetAll(tctx(t))
	must(t, err)
	if got := names(nodes, func(n client.Node) string { return n.Name }); !equalStrings(got, []string{"a", "b", "c"}) {
		t.Fatalf("nodes = %v, want [a b c]", got)
	}
	b := nodes[1]
	for key, want := range map[string]string{
		"Aux/topology/linbit.com/hostname":         "b",
		"Aux/topology/kubernetes.io/hostname":      "b",
		"Aux/topology/topology.kubernetes.io/zone": "z1",
	} {
		if b.Props[key] != want {
			t.Errorf("node b prop %s = %q, want %q", key, b.Props[key], want)
		}
	}
	if b.ConnectionStatus != "ONLINE" || b.Type != "SATELLITE" {
		t.Errorf("node b status/type = %s/%s", b.ConnectionStatus, b.Type)
	}
}

func TestNodesGetAllHonoursNodeAndPropFiltersAndPaging(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)

	byName, err := c.Nodes.GetAll(tctx(t), &client.ListOpts{Node: []string{"c", "a"}})
	must(t, err)
	if got := names(byName, func(n client.Node) string { return n.Name }); !equalStrings(got, []string{"a", "c"}) {
		t.Errorf("nodes=c,a gave %v", got)
	}
	byProp, err := c.Nodes.GetAll(tctx(t), &client.ListOpts{Prop: []string{"Aux/topology/topology.kubernetes.io/zone=z1"}})
	must(t, err)
	if got := names(byProp, func(n client.Node) string { return n.Name }); !equalStrings(got, []string{"a", "b"}) {
		t.Errorf("props zone=z1 gave %v", got)
	}
	page, err := c.Nodes.GetAll(tctx(t), &client.ListOpts{Offset: 1, Limit: 1})
	must(t, err)
	if got := names(page, func(n client.Node) string { return n.Name }); !equalStrings(got, []string{"b"}) {
		t.Errorf("offset 1 limit 1 gave %v", got)
	}
	one, err := c.Nodes.Get(tctx(t), "c")
	must(t, err)
	if one.Name != "c" {
		t.Errorf("Get(c) = %s", one.Name)
	}
	if _, err := c.Nodes.Get(tctx(t), "nope"); !errors.Is(err, client.NotFoundError) {
		t.Errorf("Get(nope) err = %v, want NotFoundError", err)
	}
}

func TestResourceDefinitionsGetAllWithVolumeDefinitions(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-1", SizesKiB: []uint64{1024, 2048}, Diskful: []string{"a"},
		Props: map[string]string{"Aux/x": "1"}, VDProps: map[int32]map[string]string{1: {"Aux/y": "2"}}}))
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-0", Diskful: []string{"b"}}))

	rds, err := c.ResourceDefinitions.GetAll(tctx(t), client.RDGetAllRequest{WithVolumeDefinitions: true})
	must(t, err)
	if got := names(rds, func(r client.ResourceDefinitionWithVolumeDefinition) string { return r.Name }); !equalStrings(got, []string{"pvc-0", "pvc-1"}) {
		t.Fatalf("rds = %v", got)
	}
	rd := rds[1]
	if rd.Props["Aux/x"] != "1" || rd.ResourceGroupName != "DfltRscGrp" {
		t.Errorf("pvc-1 props %v group %s", rd.Props, rd.ResourceGroupName)
	}
	if len(rd.VolumeDefinitions) != 2 {
		t.Fatalf("pvc-1 has %d volume definitions, want 2", len(rd.VolumeDefinitions))
	}
	vd1 := rd.VolumeDefinitions[1]
	if *vd1.VolumeNumber != 1 || vd1.SizeKib != 2048 || vd1.Props["Aux/y"] != "2" {
		t.Errorf("vd 1 = nr %d size %d props %v", *vd1.VolumeNumber, vd1.SizeKib, vd1.Props)
	}

	plain, err := c.ResourceDefinitions.GetAll(tctx(t), client.RDGetAllRequest{})
	must(t, err)
	if len(plain) != 2 || len(plain[0].VolumeDefinitions) != 0 {
		t.Errorf("without with_volume_definitions: %d rds, first has %d vds", len(plain), len(plain[0].VolumeDefinitions))
	}
	only, err := c.ResourceDefinitions.GetAll(tctx(t), client.RDGetAllRequest{ResourceDefinitions: []string{"pvc-1"}})
	must(t, err)
	if len(only) != 1 || only[0].Name != "pvc-1" {
		t.Errorf("resource_definitions=pvc-1 gave %d rds", len(only))
	}
}

func TestResourceDefinitionsListPagingByQuery(t *testing.T) {
	s, _ := startSim(t, Options{})
	threeNodes(t, s)
	for _, n := range []string{"r1", "r2", "r3", "r4"} {
		must(t, s.CreateVolume(VolumeSpec{Name: n, Diskful: []string{"a"}}))
	}
	// golinstor's RDGetAllRequest cannot send a limit (its tag says
	// "offset"), so page with the raw query as other clients do.
	status, body := rawGet(t, s, "/v1/resource-definitions?offset=1&limit=2")
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	var rds []client.ResourceDefinition
	must(t, json.Unmarshal([]byte(body), &rds))
	if got := names(rds, func(r client.ResourceDefinition) string { return r.Name }); !equalStrings(got, []string{"r2", "r3"}) {
		t.Errorf("page = %v, want [r2 r3]", got)
	}
}

func TestResourceViewShowsReplicaKindsAndFilters(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-1", Diskful: []string{"a"}, Diskless: []string{"b"}, TieBreaker: []string{"c"}}))
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-2", Diskful: []string{"b", "c"}}))

	view, err := c.Resources.GetResourceView(tctx(t))
	must(t, err)
	if len(view) != 5 {
		t.Fatalf("view has %d resources, want 5", len(view))
	}
	flags := map[string][]string{}
	for _, r := range view {
		if r.Name == "pvc-1" {
			flags[r.NodeName] = r.Flags
		}
		if r.LayerObject == nil || r.LayerObject.Drbd == nil || r.State == nil || r.State.InUse == nil {
			t.Fatalf("%s/%s lacks layer object or state", r.Name, r.NodeName)
		}
		if len(r.Volumes) != 1 {
			t.Fatalf("%s/%s has %d volumes", r.Name, r.NodeName, len(r.Volumes))
		}
	}
	if len(flags["a"]) != 0 {
		t.Errorf("diskful flags = %v", flags["a"])
	}
	if !slices.Contains(flags["b"], lapiconst.FlagDiskless) || !slices.Contains(flags["b"], lapiconst.FlagDrbdDiskless) {
		t.Errorf("diskless flags = %v", flags["b"])
	}
	if !slices.Contains(flags["c"], lapiconst.FlagTieBreaker) || !slices.Contains(flags["c"], lapiconst.FlagDiskless) {
		t.Errorf("tie-breaker flags = %v", flags["c"])
	}

	onB, err := c.Resources.GetResourceView(tctx(t), &client.ListOpts{Node: []string{"b"}})
	must(t, err)
	if got := names(onB, func(r client.ResourceWithVolumes) string { return r.Name }); !equalStrings(got, []string{"pvc-1", "pvc-2"}) {
		t.Errorf("nodes=b gave %v", got)
	}
	ofTwo, err := c.Resources.GetResourceView(tctx(t), &client.ListOpts{Resource: []string{"pvc-2"}})
	must(t, err)
	if got := names(ofTwo, func(r client.ResourceWithVolumes) string { return r.NodeName }); !equalStrings(got, []string{"b", "c"}) {
		t.Errorf("resources=pvc-2 gave nodes %v", got)
	}
	page, err := c.Resources.GetResourceView(tctx(t), &client.ListOpts{Offset: 3, Limit: 10})
	must(t, err)
	if len(page) != 2 {
		t.Errorf("offset 3 gave %d of 5", len(page))
	}
	pooled, err := c.Resources.GetResourceView(tctx(t), &client.ListOpts{StoragePool: []string{"DfltDisklessStorPool"}})
	must(t, err)
	if len(pooled) != 2 {
		t.Errorf("storage_pools=DfltDisklessStorPool gave %d, want 2", len(pooled))
	}
}

func TestModifyVolumeDefinitionSavesAndClearsProps(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-1", Diskful: []string{"a"}}))
	const key = "Aux/affinity-updater-saved-pv"

	must(t, c.ResourceDefinitions.ModifyVolumeDefinition(tctx(t), "pvc-1", 0, client.VolumeDefinitionModify{
		GenericPropsModify: client.GenericPropsModify{OverrideProps: map[string]string{key: `{"kind":"PersistentVolume"}`}},
	}))
	props, err := s.VDProps("pvc-1", 0)
	must(t, err)
	if props[key] != `{"kind":"PersistentVolume"}` {
		t.Fatalf("saved prop = %q", props[key])
	}
	vd, err := c.ResourceDefinitions.GetVolumeDefinition(tctx(t), "pvc-1", 0)
	must(t, err)
	if vd.Props[key] == "" || vd.SizeKib != 1<<20 {
		t.Errorf("GetVolumeDefinition = props %v size %d", vd.Props, vd.SizeKib)
	}
	vds, err := c.ResourceDefinitions.GetVolumeDefinitions(tctx(t), "pvc-1")
	must(t, err)
	if len(vds) != 1 || vds[0].Props[key] == "" {
		t.Errorf("GetVolumeDefinitions = %+v", vds)
	}

	must(t, c.ResourceDefinitions.ModifyVolumeDefinition(tctx(t), "pvc-1", 0, client.VolumeDefinitionModify{
		GenericPropsModify: client.GenericPropsModify{DeleteProps: []string{key}},
	}))
	props, err = s.VDProps("pvc-1", 0)
	must(t, err)
	if _, ok := props[key]; ok {
		t.Errorf("prop still set after delete_props: %v", props)
	}

	if err := c.ResourceDefinitions.ModifyVolumeDefinition(tctx(t), "gone", 0, client.VolumeDefinitionModify{}); !errors.Is(err, client.NotFoundError) {
		t.Errorf("missing RD: err = %v, want NotFoundError", err)
	}
	if _, err := c.ResourceDefinitions.GetVolumeDefinition(tctx(t), "pvc-1", 7); !errors.Is(err, client.NotFoundError) {
		t.Errorf("missing VD: err = %v, want NotFoundError", err)
	}
}

func TestModifyResourceDefinitionSavesAndClearsProps(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-1", Diskful: []string{"a"}}))

	must(t, c.ResourceDefinitions.Modify(tctx(t), "pvc-1", client.GenericPropsModify{
		OverrideProps: map[string]string{"Aux/affinity-updater-skip": "yes", "Aux/ns/a": "1", "Aux/ns/b": "2"},
	}))
	rd, err := c.ResourceDefinitions.Get(tctx(t), "pvc-1")
	must(t, err)
	if rd.Props["Aux/affinity-updater-skip"] != "yes" || rd.Name != "pvc-1" {
		t.Fatalf("Get after modify = %+v", rd)
	}
	must(t, c.ResourceDefinitions.Modify(tctx(t), "pvc-1", client.GenericPropsModify{
		DeleteProps: []string{"Aux/affinity-updater-skip"}, DeleteNamespaces: []string{"Aux/ns"},
	}))
	props, err := s.RDProps("pvc-1")
	must(t, err)
	if len(props) != 0 {
		t.Errorf("props after delete = %v, want none", props)
	}
	if _, err := c.ResourceDefinitions.Get(tctx(t), "gone"); !errors.Is(err, client.NotFoundError) {
		t.Errorf("Get(gone) err = %v", err)
	}
	if err := c.ResourceDefinitions.Modify(tctx(t), "gone", client.GenericPropsModify{}); !errors.Is(err, client.NotFoundError) {
		t.Errorf("Modify(gone) err = %v", err)
	}
}

func TestErrorsAreApiCallErrorsWithLinstorCodes(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-1", Diskful: []string{"a"}}))

	err := c.ResourceDefinitions.Create(tctx(t), client.ResourceDefinitionCreate{ResourceDefinition: client.ResourceDefinition{Name: "pvc-1"}})
	if !client.IsApiCallError(err, lapiconst.FailExistsRscDfn) {
		t.Errorf("duplicate create err = %v, want FailExistsRscDfn", err)
	}
	err = c.ResourceDefinitions.ModifyVolumeDefinition(tctx(t), "pvc-1", 0, client.VolumeDefinitionModify{SizeKib: 1})
	if !client.IsApiCallError(err, lapiconst.FailInvldVlmSize) {
		t.Errorf("shrink err = %v, want FailInvldVlmSize", err)
	}
	status, body := rawGet(t, s, "/v1/events/drbd/promotion")
	if status != 501 {
		t.Errorf("unknown route: status %d body %s", status, body)
	}
}

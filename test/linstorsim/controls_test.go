package linstorsim

import (
	"errors"
	"slices"
	"testing"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

func TestAddNodeSetsHostnamePropsInConfiguredNamespace(t *testing.T) {
	s, _ := startSim(t, Options{PropertyNamespace: "Aux"})
	must(t, s.AddNode("n1", map[string]string{"Aux/kubernetes.io/hostname": "custom"}))
	props, err := s.NodeProps("n1")
	must(t, err)
	if props["Aux/linbit.com/hostname"] != "n1" {
		t.Errorf("linbit.com/hostname = %q", props["Aux/linbit.com/hostname"])
	}
	if props["Aux/kubernetes.io/hostname"] != "custom" {
		t.Errorf("given kubernetes.io/hostname overwritten: %q", props["Aux/kubernetes.io/hostname"])
	}
	if err := s.AddNode("n1", nil); !errors.As(err, new(*APIError)) {
		t.Errorf("duplicate node err = %v", err)
	}
}

func TestSetNodePropsAndOnline(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)
	must(t, s.SetNodeProps("a", map[string]string{"Aux/topology/rack": "r1"}, "Aux/topology/topology.kubernetes.io/zone"))
	must(t, s.SetNodeOnline("a", false))
	n, err := c.Nodes.Get(tctx(t), "a")
	must(t, err)
	if n.Props["Aux/topology/rack"] != "r1" {
		t.Errorf("rack = %q", n.Props["Aux/topology/rack"])
	}
	if _, ok := n.Props["Aux/topology/topology.kubernetes.io/zone"]; ok {
		t.Error("deleted zone prop still present")
	}
	if n.ConnectionStatus != "OFFLINE" {
		t.Errorf("status = %s", n.ConnectionStatus)
	}
	if err := s.SetNodeProps("zz", nil); !IsNotFound(err) {
		t.Errorf("missing node err = %v", err)
	}
}

func TestRemoveNodeDropsItsResourcesAndLogsThem(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-1", Diskful: []string{"a", "b"}}))
	must(t, s.RemoveNode("a"))

	nodes, err := s.DiskfulNodes("pvc-1")
	must(t, err)
	if !equalStrings(nodes, []string{"b"}) {
		t.Errorf("diskful nodes = %v", nodes)
	}
	if _, err := c.Nodes.Get(tctx(t), "a"); !errors.Is(err, client.NotFoundError) {
		t.Errorf("removed node still served: %v", err)
	}
	d := s.Deletions()
	if len(d) != 1 || d[0].Kind != DeletedResource || d[0].Node != "a" || d[0].Via != ViaSim {
		t.Errorf("deletions = %+v", d)
	}
	if len(s.VolumeDeletions()) != 0 {
		t.Error("losing a replica counted as a volume deletion")
	}
}

func TestCreateVolumeIsAllOrNothing(t *testing.T) {
	s, _ := startSim(t, Options{})
	threeNodes(t, s)
	err := s.CreateVolume(VolumeSpec{Name: "pvc-1", Diskful: []string{"a", "nope"}})
	if !IsNotFound(err) {
		t.Fatalf("err = %v, want node not found", err)
	}
	if s.VolumeExists("pvc-1") {
		t.Error("volume exists after failed create")
	}
	if err := s.CreateVolume(VolumeSpec{Name: "bad name"}); err == nil {
		t.Error("invalid name accepted")
	}
}

func TestAddDeleteAndMoveReplica(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-1", Diskful: []string{"a"}}))
	must(t, s.AddReplica("pvc-1", "b", Diskful))
	must(t, s.AddReplica("pvc-1", "c", TieBreaker))
	if err := s.AddReplica("pvc-1", "b", Diskless); !client.IsApiCallError(toAPICallError(err), lapiconst.FailExistsRsc) {
		t.Errorf("second replica on b: %v", err)
	}
	nodes, err := s.DiskfulNodes("pvc-1")
	must(t, err)
	if !equalStrings(nodes, []string{"a", "b"}) {
		t.Fatalf("diskful = %v", nodes)
	}

	must(t, s.DeleteReplica("pvc-1", "c"))
	must(t, s.MoveReplica("pvc-1", "a", "c"))
	nodes, err = s.DiskfulNodes("pvc-1")
	must(t, err)
	if !equalStrings(nodes, []string{"b", "c"}) {
		t.Fatalf("after move diskful = %v", nodes)
	}
	view, err := c.Resources.GetAll(tctx(t), "pvc-1")
	must(t, err)
	if got := names(view, func(r client.Resource) string { return r.NodeName }); !equalStrings(got, []string{"b", "c"}) {
		t.Errorf("REST resources = %v", got)
	}
	if err := s.MoveReplica("pvc-1", "a", "c"); !IsNotFound(err) {
		t.Errorf("move from node without replica: %v", err)
	}
	if err := s.MoveReplica("pvc-1", "b", "c"); err == nil {
		t.Error("move onto a node holding the volume succeeded")
	}
	if len(s.Deletions()) != 2 || len(s.VolumeDeletions()) != 0 {
		t.Errorf("deletions = %+v", s.Deletions())
	}
}

// toAPICallError converts a control error to the wire error golinstor
// would see, to check return codes with IsApiCallError.
func toAPICallError(err error) error {
	var ae *APIError
	if !errors.As(err, &ae) {
		return err
	}
	return ae.body()
}

func TestEvacuateNodeMovesEveryDiskfulReplicaDeterministically(t *testing.T) {
	s, _ := startSim(t, Options{})
	threeNodes(t, s)
	must(t, s.AddNode("d", nil, StoragePool{Name: "thin"}))
	must(t, s.CreateVolume(VolumeSpec{Name: "v1", Diskful: []string{"a", "b"}}))
	must(t, s.CreateVolume(VolumeSpec{Name: "v2", Diskful: []string{"a", "c"}}))
	must(t, s.CreateVolume(VolumeSpec{Name: "v3", Diskful: []string{"b", "c"}, Diskless: []string{"a"}}))

	moves, err := s.EvacuateNode("a")
	must(t, err)
	// Loads before: a2 b2 c2 d0 (diskless counts). v1 may go to c or d: d
	// has the least. v2 may go to b (2) or d (1 now): d again.
	want := []Move{{"v1", "a", "d"}, {"v2", "a", "d"}}
	if !slices.Equal(moves, want) {
		t.Fatalf("moves = %v, want %v", moves, want)
	}
	for _, v := range []string{"v1", "v2"} {
		nodes, err := s.DiskfulNodes(v)
		must(t, err)
		if slices.Contains(nodes, "a") || !slices.Contains(nodes, "d") || len(nodes) != 2 {
			t.Errorf("%s diskful after evacuate = %v", v, nodes)
		}
	}
	reps, err := s.Replicas("v3")
	must(t, err)
	if len(reps) != 3 || reps[0].Node != "a" || reps[0].Diskful {
		t.Errorf("diskless replica of v3 on a was touched: %+v", reps)
	}
	n, err := s.st.node("a")
	must(t, err)
	if !slices.Contains(n.flags, lapiconst.FlagEvacuate) {
		t.Errorf("node a flags = %v, want EVACUATE", n.flags)
	}

	// A node whose replicas have nowhere to go reports them.
	must(t, s.CreateVolume(VolumeSpec{Name: "v4", Diskful: []string{"b", "c", "d"}}))
	moves, err = s.EvacuateNode("b")
	if err == nil {
		t.Fatal("evacuating b with v4 on every other node succeeded")
	}
	for _, m := range moves {
		if m.ResourceDefinition == "v4" {
			t.Errorf("v4 moved: %+v", m)
		}
	}
}

func TestReplicaFlagsDecideWhatCountsAsDiskful(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-1", Diskful: []string{"a", "b", "c"}}))
	must(t, s.SetReplicaFlags("pvc-1", "a", lapiconst.FlagDelete))
	must(t, s.SetReplicaFlags("pvc-1", "b", lapiconst.FlagFailedDeployment))
	nodes, err := s.DiskfulNodes("pvc-1")
	must(t, err)
	if !equalStrings(nodes, []string{"c"}) {
		t.Errorf("diskful = %v, want [c]", nodes)
	}
	r, err := c.Resources.Get(tctx(t), "pvc-1", "a")
	must(t, err)
	if !equalStrings(r.Flags, []string{lapiconst.FlagDelete}) {
		t.Errorf("REST flags = %v", r.Flags)
	}
	must(t, s.SetReplicaHealthy("pvc-1", "c", false))
	r, err = c.Resources.Get(tctx(t), "pvc-1", "c")
	must(t, err)
	if r.LayerObject.Drbd.PromotionScore != 0 {
		t.Errorf("unhealthy replica promotion score = %d", r.LayerObject.Drbd.PromotionScore)
	}
	must(t, s.SetReplicaInUse("pvc-1", "c", true))
	r, err = c.Resources.Get(tctx(t), "pvc-1", "c")
	must(t, err)
	if r.State == nil || r.State.InUse == nil || !*r.State.InUse {
		t.Errorf("in use not reported: %+v", r.State)
	}
}

func TestPropsControlsAndVolumeExists(t *testing.T) {
	s, _ := startSim(t, Options{})
	threeNodes(t, s)
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-1", Diskful: []string{"a"}}))
	must(t, s.SetRDProps("pvc-1", map[string]string{"Aux/k": "v"}))
	must(t, s.SetVDProps("pvc-1", 0, map[string]string{"Aux/saved": "x"}))
	rp, err := s.RDProps("pvc-1")
	must(t, err)
	vp, err := s.VDProps("pvc-1", 0)
	must(t, err)
	if rp["Aux/k"] != "v" || vp["Aux/saved"] != "x" {
		t.Errorf("rd props %v vd props %v", rp, vp)
	}
	must(t, s.SetVDProps("pvc-1", 0, nil, "Aux/saved"))
	vp, err = s.VDProps("pvc-1", 0)
	must(t, err)
	if len(vp) != 0 {
		t.Errorf("vd props after delete = %v", vp)
	}
	if _, err := s.VDProps("pvc-1", 3); !IsNotFound(err) {
		t.Errorf("missing VD err = %v", err)
	}
	if !s.VolumeExists("pvc-1") || s.VolumeExists("pvc-2") {
		t.Error("VolumeExists wrong")
	}
	must(t, s.DeleteVolume("pvc-1"))
	if s.VolumeExists("pvc-1") {
		t.Error("volume exists after DeleteVolume")
	}
	vd := s.VolumeDeletions()
	if len(vd) != 1 || vd[0].ResourceDefinition != "pvc-1" || vd[0].Via != ViaSim {
		t.Errorf("volume deletions = %+v", vd)
	}
}

func TestDeletionLogRecordsAPIDeletionsWithUserAgent(t *testing.T) {
	s, _ := startSim(t, Options{})
	c, err := s.NewClient(client.UserAgent("sidecar-under-test"))
	must(t, err)
	threeNodes(t, s)
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-1", SizesKiB: []uint64{1024, 1024}, Diskful: []string{"a", "b"}}))
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-2", Diskful: []string{"a"}}))
	s.ResetDeletions()

	must(t, c.ResourceDefinitions.DeleteVolumeDefinition(tctx(t), "pvc-1", 1))
	must(t, c.Resources.Delete(tctx(t), "pvc-1", "b"))
	must(t, c.ResourceDefinitions.Delete(tctx(t), "pvc-2"))

	d := s.Deletions()
	kinds := names(d, func(x Deletion) string { return x.Kind })
	want := []string{DeletedVolumeDefinition, DeletedResource, DeletedResource, DeletedResourceDefinition}
	if !equalStrings(kinds, want) {
		t.Fatalf("deletion kinds = %v, want %v", kinds, want)
	}
	for _, x := range d {
		if x.Via != ViaAPI || x.UserAgent != "sidecar-under-test" {
			t.Errorf("deletion %+v lacks API origin", x)
		}
	}
	if *d[0].VolumeNumber != 1 {
		t.Errorf("vd deletion number = %d", *d[0].VolumeNumber)
	}
	if got := len(s.VolumeDeletions()); got != 2 {
		t.Errorf("volume deletions = %d, want 2", got)
	}
	s.ResetDeletions()
	if len(s.Deletions()) != 0 {
		t.Error("reset left entries")
	}
}

func TestStoragePoolCapacityFollowsPlacement(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-1", SizesKiB: []uint64{10 << 20}, Diskful: []string{"a"}, Diskless: []string{"b"}}))
	free := func(node string) int64 {
		sp, err := c.Nodes.GetStoragePool(tctx(t), node, "thin")
		must(t, err)
		return sp.FreeCapacity
	}
	if got := free("a"); got != 90<<20 {
		t.Errorf("a free = %d, want %d", got, 90<<20)
	}
	if got := free("b"); got != 100<<20 {
		t.Errorf("b (diskless) free = %d", got)
	}
	must(t, s.MoveReplica("pvc-1", "a", "c"))
	if free("a") != 100<<20 || free("c") != 90<<20 {
		t.Errorf("after move a=%d c=%d", free("a"), free("c"))
	}
	must(t, c.ResourceDefinitions.ModifyVolumeDefinition(tctx(t), "pvc-1", 0, client.VolumeDefinitionModify{SizeKib: 20 << 20}))
	if free("c") != 80<<20 {
		t.Errorf("after resize c=%d", free("c"))
	}
	view, err := c.Nodes.GetStoragePoolView(tctx(t), &client.ListOpts{StoragePool: []string{"thin"}})
	must(t, err)
	if len(view) != 3 {
		t.Errorf("pool view for thin = %d entries", len(view))
	}
}

package linstorsim

import (
	"testing"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

// newRDWithVD creates rd in group rg with one volume of size KiB over REST,
// as LINSTOR CSI does before placing it.
func newRDWithVD(t *testing.T, c *client.Client, rd, rg string, size uint64) {
	t.Helper()
	must(t, c.ResourceDefinitions.Create(tctx(t), client.ResourceDefinitionCreate{
		ResourceDefinition: client.ResourceDefinition{Name: rd, ResourceGroupName: rg},
	}))
	zero := int32(0)
	must(t, c.ResourceDefinitions.CreateVolumeDefinition(tctx(t), rd, client.VolumeDefinitionCreate{
		VolumeDefinition: client.VolumeDefinition{VolumeNumber: &zero, SizeKib: size},
	}))
}

func diskful(t *testing.T, s *Sim, rd string) []string {
	t.Helper()
	nodes, err := s.DiskfulNodes(rd)
	must(t, err)
	return nodes
}

func TestAutoplaceUsesResourceGroupPlaceCountAndPools(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)
	must(t, s.AddNode("d", nil, StoragePool{Name: "other"}))
	must(t, c.ResourceGroups.Create(tctx(t), client.ResourceGroup{Name: "sc-thin"}))
	must(t, c.ResourceGroups.Modify(tctx(t), "sc-thin", client.ResourceGroupModify{
		SelectFilter: client.AutoSelectFilter{PlaceCount: 2, StoragePoolList: []string{"thin"}},
	}))
	rg, err := c.ResourceGroups.Get(tctx(t), "sc-thin")
	must(t, err)
	if rg.SelectFilter.PlaceCount != 2 || !equalStrings(rg.SelectFilter.StoragePoolList, []string{"thin"}) {
		t.Fatalf("group filter = %+v", rg.SelectFilter)
	}
	newRDWithVD(t, c, "pvc-1", "sc-thin", 1<<20)

	must(t, c.Resources.Autoplace(tctx(t), "pvc-1", client.AutoPlaceRequest{}))
	// Equal free space everywhere: ties go by name, and d has no "thin".
	if got := diskful(t, s, "pvc-1"); !equalStrings(got, []string{"a", "b"}) {
		t.Fatalf("placed on %v, want [a b]", got)
	}
	// Already at the place count: a no-op, not an error.
	must(t, c.Resources.Autoplace(tctx(t), "pvc-1", client.AutoPlaceRequest{}))
	if got := diskful(t, s, "pvc-1"); len(got) != 2 {
		t.Errorf("second autoplace changed placement: %v", got)
	}
	// One more on request.
	must(t, c.Resources.Autoplace(tctx(t), "pvc-1", client.AutoPlaceRequest{SelectFilter: client.AutoSelectFilter{AdditionalPlaceCount: 1}}))
	if got := diskful(t, s, "pvc-1"); !equalStrings(got, []string{"a", "b", "c"}) {
		t.Errorf("after additional: %v", got)
	}
	err = c.Resources.Autoplace(tctx(t), "pvc-1", client.AutoPlaceRequest{SelectFilter: client.AutoSelectFilter{AdditionalPlaceCount: 1}})
	if !client.IsApiCallError(err, lapiconst.FailNotEnoughNodes) {
		t.Errorf("no room left: err = %v, want FailNotEnoughNodes", err)
	}
}

func TestAutoplaceRespectsNodeListSpaceAndReplicasOnDifferent(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)
	newRDWithVD(t, c, "pvc-1", "", 1<<20)
	must(t, c.Resources.Autoplace(tctx(t), "pvc-1", client.AutoPlaceRequest{
		SelectFilter: client.AutoSelectFilter{PlaceCount: 1, NodeNameList: []string{"c"}},
	}))
	if got := diskful(t, s, "pvc-1"); !equalStrings(got, []string{"c"}) {
		t.Errorf("node list [c] placed on %v", got)
	}

	// Free space now orders a, b, c; zones must differ, so b is skipped.
	must(t, s.CreateVolume(VolumeSpec{Name: "filler", SizesKiB: []uint64{5 << 20}, Diskful: []string{"c"}}))
	newRDWithVD(t, c, "pvc-2", "", 1<<20)
	must(t, c.Resources.Autoplace(tctx(t), "pvc-2", client.AutoPlaceRequest{
		SelectFilter: client.AutoSelectFilter{PlaceCount: 2, ReplicasOnDifferent: []string{"Aux/topology/topology.kubernetes.io/zone"}},
	}))
	if got := diskful(t, s, "pvc-2"); !equalStrings(got, []string{"a", "c"}) {
		t.Errorf("replicas on different zones placed on %v, want [a c]", got)
	}

	// The second replica must share c's zone: only e, the fullest node.
	must(t, s.AddNode("e", map[string]string{"Aux/topology/topology.kubernetes.io/zone": "z2"}, StoragePool{Name: "thin", TotalKiB: 10 << 20}))
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-3", Diskful: []string{"c"}}))
	must(t, c.Resources.Autoplace(tctx(t), "pvc-3", client.AutoPlaceRequest{
		SelectFilter: client.AutoSelectFilter{PlaceCount: 2, ReplicasOnSame: []string{"Aux/topology/topology.kubernetes.io/zone"}},
	}))
	if got := diskful(t, s, "pvc-3"); !equalStrings(got, []string{"c", "e"}) {
		t.Errorf("replicas on same zone placed on %v, want [c e]", got)
	}

	newRDWithVD(t, c, "huge", "", 200<<20)
	err := c.Resources.Autoplace(tctx(t), "huge", client.AutoPlaceRequest{SelectFilter: client.AutoSelectFilter{PlaceCount: 1}})
	if !client.IsApiCallError(err, lapiconst.FailNotEnoughNodes) {
		t.Errorf("volume larger than any pool: err = %v", err)
	}
	if got := diskful(t, s, "huge"); len(got) != 0 {
		t.Errorf("failed autoplace left replicas on %v", got)
	}
}

func TestAutoplaceSkipsOfflineEvacuatingAndExcludedNodes(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)
	must(t, s.SetNodeOnline("a", false))
	must(t, s.SetNodeEvacuating("b", true))
	newRDWithVD(t, c, "pvc-1", "", 1<<20)
	err := c.Resources.Autoplace(tctx(t), "pvc-1", client.AutoPlaceRequest{})
	if !client.IsApiCallError(err, lapiconst.FailNotEnoughNodes) {
		t.Fatalf("only c eligible, place count 2: err = %v", err)
	}
	must(t, s.SetNodeEvacuating("b", false))
	must(t, s.SetNodeProps("c", map[string]string{lapiconst.KeyAutoplaceAllowTarget: "false"}))
	err = c.Resources.Autoplace(tctx(t), "pvc-1", client.AutoPlaceRequest{})
	if !client.IsApiCallError(err, lapiconst.FailNotEnoughNodes) {
		t.Fatalf("c excluded by AutoplaceTarget=false: err = %v", err)
	}
	must(t, s.SetNodeOnline("a", true))
	must(t, c.Resources.Autoplace(tctx(t), "pvc-1", client.AutoPlaceRequest{}))
	if got := diskful(t, s, "pvc-1"); !equalStrings(got, []string{"a", "b"}) {
		t.Errorf("placed on %v", got)
	}
}

func TestSpawnCreatesAndPlacesAtomically(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)
	must(t, c.ResourceGroups.Create(tctx(t), client.ResourceGroup{Name: "rg1", SelectFilter: client.AutoSelectFilter{PlaceCount: 3}}))
	must(t, c.ResourceGroups.Spawn(tctx(t), "rg1", client.ResourceGroupSpawn{ResourceDefinitionName: "pvc-1", VolumeSizes: []int64{1024}}))
	if got := diskful(t, s, "pvc-1"); len(got) != 3 {
		t.Errorf("spawned on %v, want 3 nodes", got)
	}
	err := c.ResourceGroups.Spawn(tctx(t), "rg1", client.ResourceGroupSpawn{
		ResourceDefinitionName: "pvc-2", VolumeSizes: []int64{1024}, SelectFilter: client.AutoSelectFilter{PlaceCount: 4},
	})
	if !client.IsApiCallError(err, lapiconst.FailNotEnoughNodes) {
		t.Errorf("spawn on 4 of 3 nodes: %v", err)
	}
	if s.VolumeExists("pvc-2") {
		t.Error("failed spawn left a resource definition")
	}
	err = c.ResourceGroups.Delete(tctx(t), "rg1")
	if !client.IsApiCallError(err, lapiconst.FailExistsRscDfn) {
		t.Errorf("deleting a used group: %v", err)
	}
}

func TestMakeAvailableAddsDisklessReplica(t *testing.T) {
	s, c := startSim(t, Options{})
	threeNodes(t, s)
	must(t, s.CreateVolume(VolumeSpec{Name: "pvc-1", Diskful: []string{"a"}}))
	must(t, c.Resources.MakeAvailable(tctx(t), "pvc-1", "c", client.ResourceMakeAvailable{}))
	r, err := c.Resources.Get(tctx(t), "pvc-1", "c")
	must(t, err)
	if r.Flags[0] != lapiconst.FlagDiskless {
		t.Errorf("make-available flags = %v", r.Flags)
	}
	v, err := c.Resources.GetVolume(tctx(t), "pvc-1", "c", 0)
	must(t, err)
	if v.DevicePath == "" || v.ProviderKind != client.DISKLESS {
		t.Errorf("volume = %+v", v)
	}
	if got := diskful(t, s, "pvc-1"); !equalStrings(got, []string{"a"}) {
		t.Errorf("diskful = %v", got)
	}
}

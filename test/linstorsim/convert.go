package linstorsim

import (
	"encoding/json"
	"fmt"
	"slices"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
	"github.com/LINBIT/golinstor/devicelayerkind"
)

// This file turns records into golinstor's wire types, the shapes a real
// LINSTOR controller answers with.

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain structs, maps and slices are encoded here.
		panic(fmt.Sprintf("linstorsim: encode %T: %v", v, err))
	}
	return b
}

func nodeToAPI(n *nodeRec) client.Node {
	status := "ONLINE"
	if !n.online {
		status = "OFFLINE"
	}
	return client.Node{
		Name:             n.name,
		Type:             "SATELLITE",
		Flags:            slices.Clone(n.flags),
		Props:            copyProps(n.props),
		ConnectionStatus: status,
		Uuid:             n.uuid,
		StorageProviders: []client.ProviderKind{client.DISKLESS, client.LVM, client.LVM_THIN, client.ZFS, client.ZFS_THIN, client.FILE, client.FILE_THIN},
		ResourceLayers:   []devicelayerkind.DeviceLayerKind{devicelayerkind.Drbd, devicelayerkind.Storage, devicelayerkind.Luks, devicelayerkind.Nvme},
	}
}

func poolToAPI(n *nodeRec, p poolRec, usedKiB int64) client.StoragePool {
	sp := client.StoragePool{
		StoragePoolName:  p.name,
		NodeName:         n.name,
		ProviderKind:     p.provider,
		FreeSpaceMgrName: n.name + ";" + p.name,
		Uuid:             n.uuid + "-" + p.name,
	}
	if p.provider != client.DISKLESS {
		sp.TotalCapacity = p.totalKiB
		sp.FreeCapacity = max(p.totalKiB-usedKiB, 0)
		sp.SupportsSnapshots = p.provider == client.LVM_THIN || p.provider == client.ZFS || p.provider == client.ZFS_THIN
	}
	return sp
}

func rgToAPI(g *rgRec) client.ResourceGroup {
	f := g.filter
	f.NodeNameList = slices.Clone(f.NodeNameList)
	f.StoragePoolList = slices.Clone(f.StoragePoolList)
	f.ReplicasOnSame = slices.Clone(f.ReplicasOnSame)
	f.ReplicasOnDifferent = slices.Clone(f.ReplicasOnDifferent)
	f.LayerStack = slices.Clone(f.LayerStack)
	return client.ResourceGroup{
		Name:         g.name,
		Description:  g.description,
		Props:        copyProps(g.props),
		SelectFilter: f,
		Uuid:         g.uuid,
	}
}

func rdToAPI(r *rdRec) client.ResourceDefinition {
	return client.ResourceDefinition{
		Name:              r.name,
		Props:             copyProps(r.props),
		Flags:             slices.Clone(r.flags),
		Uuid:              r.uuid,
		ResourceGroupName: r.rg,
		LayerData: []client.ResourceDefinitionLayer{
			{Type: devicelayerkind.Drbd, Data: &client.DrbdResourceDefinitionLayer{PeerSlots: 7, AlStripes: 1, Port: r.port, TransportType: "IP"}},
			{Type: devicelayerkind.Storage},
		},
	}
}

func vdToAPI(v *vdRec) client.VolumeDefinition {
	nr := v.nr
	return client.VolumeDefinition{
		VolumeNumber: &nr,
		SizeKib:      v.sizeKiB,
		Props:        copyProps(v.props),
		Flags:        slices.Clone(v.flags),
		Uuid:         v.uuid,
		LayerData: []client.VolumeDefinitionLayer{
			{Type: devicelayerkind.Drbd, Data: &client.DrbdVolumeDefinition{VolumeNumber: v.nr, MinorNumber: v.minor}},
			{Type: devicelayerkind.Storage},
		},
	}
}

func rdWithVDToAPI(r *rdRec) client.ResourceDefinitionWithVolumeDefinition {
	out := client.ResourceDefinitionWithVolumeDefinition{ResourceDefinition: rdToAPI(r)}
	for i := range r.vds {
		out.VolumeDefinitions = append(out.VolumeDefinitions, vdToAPI(&r.vds[i]))
	}
	return out
}

// promotionScore mimics DRBD: a healthy replica, diskful or diskless, may
// be promoted; an unhealthy one may not, which LINSTOR CSI reports as an
// abnormal volume condition.
func promotionScore(res *resRec) int32 {
	if !res.healthy {
		return 0
	}
	if res.diskful() {
		return 10102
	}
	return 1
}

func diskState(res *resRec) string {
	switch {
	case !res.healthy:
		return "Failed"
	case !res.diskful():
		if slices.Contains(res.flags, lapiconst.FlagTieBreaker) {
			return "TieBreaker"
		}
		return "Diskless"
	default:
		return "UpToDate"
	}
}

func volumeToAPI(r *rdRec, res *resRec, v *vdRec) client.Volume {
	var alloc int64
	if res.diskful() {
		alloc = int64(v.sizeKiB)
	}
	dev := fmt.Sprintf("/dev/drbd%d", v.minor)
	state := diskState(res)
	return client.Volume{
		VolumeNumber:     v.nr,
		StoragePoolName:  res.pool,
		ProviderKind:     res.provider,
		DevicePath:       dev,
		AllocatedSizeKib: alloc,
		UsableSizeKib:    int64(v.sizeKiB),
		Props:            copyProps(res.volProps[v.nr]),
		Flags:            slices.Clone(res.volFlags),
		State:            client.VolumeState{DiskState: state},
		Uuid:             fmt.Sprintf("%s-%s-%d", r.uuid, res.node, v.nr),
		LayerDataList: []client.VolumeLayer{
			{Type: devicelayerkind.Drbd, Data: &client.DrbdVolume{
				DrbdVolumeDefinition: client.DrbdVolumeDefinition{VolumeNumber: v.nr, MinorNumber: v.minor},
				DevicePath:           dev,
				AllocatedSizeKib:     alloc,
				UsableSizeKib:        int64(v.sizeKiB),
				DiskState:            state,
			}},
			{Type: devicelayerkind.Storage, Data: &client.StorageVolume{
				VolumeNumber:     v.nr,
				AllocatedSizeKib: alloc,
				UsableSizeKib:    alloc,
				DiskState:        "[]",
			}},
		},
	}
}

func resToAPI(r *rdRec, res *resRec) client.ResourceWithVolumes {
	inUse := res.inUse
	ts := client.TimeStampMs{Time: res.created}
	out := client.ResourceWithVolumes{
		Resource: client.Resource{
			Name:     r.name,
			NodeName: res.node,
			Props:    copyProps(res.props),
			Flags:    slices.Clone(res.flags),
			LayerObject: &client.ResourceLayer{
				Type: devicelayerkind.Drbd,
				Drbd: &client.DrbdResource{
					NodeId:         res.nodeID,
					PeerSlots:      7,
					AlStripes:      1,
					PromotionScore: promotionScore(res),
					MayPromote:     res.healthy && !inUse,
				},
				Children: []client.ResourceLayer{{
					Type:    devicelayerkind.Storage,
					Storage: &client.StorageResource{},
				}},
			},
			State: &client.ResourceState{InUse: &inUse},
			Uuid:  res.uuid,
		},
		CreateTimestamp: &ts,
	}
	for i := range r.vds {
		out.Volumes = append(out.Volumes, volumeToAPI(r, res, &r.vds[i]))
	}
	return out
}

package csifake

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// controller serves the parts of the CSI Controller service csiprobe uses.
type controller struct {
	csi.UnimplementedControllerServer
	s *state
}

func (c controller) ControllerGetCapabilities(ctx context.Context, req *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	if err := c.s.enter(ctx, ControllerGetCapabilities, req); err != nil {
		return nil, err
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	rsp := &csi.ControllerGetCapabilitiesResponse{}
	for _, t := range sortedTrue(c.s.ctrlCaps) {
		rsp.Capabilities = append(rsp.Capabilities, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}},
		})
	}
	return rsp, nil
}

func (c controller) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	if err := c.s.enter(ctx, ControllerGetVolume, req); err != nil {
		return nil, err
	}
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "csifake: volume id missing")
	}
	c.s.mu.Lock()
	v, ok := c.s.volumes[id]
	c.s.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "csifake: no volume %q", id)
	}
	if v.Code != codes.OK {
		return nil, status.Errorf(v.Code, "csifake: volume %q: injected %s error", id, v.Code)
	}
	st := &csi.ControllerGetVolumeResponse_VolumeStatus{PublishedNodeIds: v.PublishedNodeIDs}
	if v.Condition != nil {
		appendLegacyCondition(st, *v.Condition)
	}
	return &csi.ControllerGetVolumeResponse{
		Volume: &csi.Volume{VolumeId: id, CapacityBytes: v.CapacityBytes},
		Status: st,
	}, nil
}

func (c controller) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	if err := c.s.enter(ctx, GetCapacity, req); err != nil {
		return nil, err
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	key := segmentKey(req.GetAccessibleTopology().GetSegments())
	return &csi.GetCapacityResponse{AvailableCapacity: c.s.capacity[key]}, nil
}

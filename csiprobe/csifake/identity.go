package csifake

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// identity serves the CSI Identity service from the shared state.
type identity struct {
	csi.UnimplementedIdentityServer
	s *state
}

func (i identity) GetPluginInfo(ctx context.Context, req *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	if err := i.s.enter(ctx, GetPluginInfo, req); err != nil {
		return nil, err
	}
	i.s.mu.Lock()
	defer i.s.mu.Unlock()
	return &csi.GetPluginInfoResponse{Name: i.s.name, VendorVersion: i.s.version}, nil
}

func (i identity) GetPluginCapabilities(ctx context.Context, req *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	if err := i.s.enter(ctx, GetPluginCapabilities, req); err != nil {
		return nil, err
	}
	i.s.mu.Lock()
	defer i.s.mu.Unlock()
	rsp := &csi.GetPluginCapabilitiesResponse{}
	for _, t := range sortedTrue(i.s.pluginCaps) {
		rsp.Capabilities = append(rsp.Capabilities, &csi.PluginCapability{
			Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: t}},
		})
	}
	return rsp, nil
}

func (i identity) Probe(ctx context.Context, req *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	if err := i.s.enter(ctx, Probe, req); err != nil {
		return nil, err
	}
	i.s.mu.Lock()
	defer i.s.mu.Unlock()
	switch i.s.ready {
	case ReadyTrue:
		return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
	case ReadyFalse:
		return &csi.ProbeResponse{Ready: wrapperspb.Bool(false)}, nil
	default:
		return &csi.ProbeResponse{}, nil
	}
}

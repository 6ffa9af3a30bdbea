package csiprobe

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/rpc"
)

// Info identifies the driver: Name is what PVs carry in spec.csi.driver, so
// the sidecar filters on it; Version goes into logs and metrics.
type Info struct {
	Name    string
	Version string
}

// PluginCaps are the plugin service capabilities the sidecar depends on.
type PluginCaps struct {
	// ControllerService: the socket belongs to a controller plugin.
	ControllerService bool
	// AccessibilityConstraints: the driver writes node affinity into its
	// PVs, which is what the sidecar keeps in sync.
	AccessibilityConstraints bool
}

// DriverInfo asks the driver for its name and version (GetPluginInfo). An
// empty name is an error (ErrEmptyDriverName).
func (c *Client) DriverInfo(ctx context.Context) (Info, error) {
	var rsp *csi.GetPluginInfoResponse
	err := c.call(ctx, "GetPluginInfo", func(ctx context.Context) error {
		var err error
		rsp, err = csi.NewIdentityClient(c.conn).GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
		return err
	})
	if err != nil {
		return Info{}, err
	}
	info := Info{Name: rsp.GetName(), Version: rsp.GetVendorVersion()}
	if info.Name == "" {
		return info, fmt.Errorf("GetPluginInfo: %w", ErrEmptyDriverName)
	}
	return info, nil
}

// PluginCapabilities asks which plugin services the driver offers
// (GetPluginCapabilities).
func (c *Client) PluginCapabilities(ctx context.Context) (PluginCaps, error) {
	var set rpc.PluginCapabilitySet
	err := c.call(ctx, "GetPluginCapabilities", func(ctx context.Context) error {
		var err error
		set, err = rpc.GetPluginCapabilities(ctx, c.conn)
		return err
	})
	if err != nil {
		return PluginCaps{}, err
	}
	return PluginCaps{
		ControllerService:        set[csi.PluginCapability_Service_CONTROLLER_SERVICE],
		AccessibilityConstraints: set[csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS],
	}, nil
}

// Probe asks whether the driver is ready. A missing ready field counts as
// ready, as the CSI spec requires; LINSTOR CSI always answers that way.
func (c *Client) Probe(ctx context.Context) (bool, error) {
	var ready bool
	err := c.call(ctx, "Probe", func(ctx context.Context) error {
		var err error
		ready, err = rpc.Probe(ctx, c.conn)
		return err
	})
	return ready, err
}

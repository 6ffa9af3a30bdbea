package csiprobe

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/rpc"
)

// legacyVolumeCondition is the controller capability VOLUME_CONDITION
// (wire value 11). CSI spec v1.13 dropped its Go name, but LINSTOR CSI,
// built against older specs, advertises it and fills in the condition.
const legacyVolumeCondition csi.ControllerServiceCapability_RPC_Type = 11

// ControllerCaps are the controller capabilities the sidecar can use.
type ControllerCaps struct {
	// GetVolume: ControllerGetVolume works, so VolumeStatus can ask
	// whether a volume still exists.
	GetVolume bool
	// GetCapacity: GetCapacity works, so Capacity can ask per segment.
	GetCapacity bool
	// ListVolumes: the driver can list its volumes.
	ListVolumes bool
	// VolumeCondition: ControllerGetVolume reports whether a volume is
	// abnormal, so VolumeStatus can tell a broken volume from a healthy one.
	VolumeCondition bool
}

// ControllerCapabilities asks which controller RPCs the driver offers
// (ControllerGetCapabilities) and remembers the answer for VolumeStatus and
// Capacity until the connection is lost.
func (c *Client) ControllerCapabilities(ctx context.Context) (ControllerCaps, error) {
	c.mu.Lock()
	gen := c.capsGen
	c.mu.Unlock()
	var set rpc.ControllerCapabilitySet
	err := c.call(ctx, "ControllerGetCapabilities", func(ctx context.Context) error {
		var err error
		set, err = rpc.GetControllerCapabilities(ctx, c.conn)
		return err
	})
	if err != nil {
		return ControllerCaps{}, err
	}
	caps := ControllerCaps{
		GetVolume:       set[csi.ControllerServiceCapability_RPC_GET_VOLUME],
		GetCapacity:     set[csi.ControllerServiceCapability_RPC_GET_CAPACITY],
		ListVolumes:     set[csi.ControllerServiceCapability_RPC_LIST_VOLUMES],
		VolumeCondition: set[legacyVolumeCondition],
	}
	c.mu.Lock()
	// An answer that raced with a connection loss may come from the old
	// driver; keep it out of the cache.
	if gen == c.capsGen {
		c.caps = &caps
	}
	c.mu.Unlock()
	return caps, nil
}

// controllerCaps returns the remembered capabilities, asking the driver
// only when there are none.
func (c *Client) controllerCaps(ctx context.Context) (ControllerCaps, error) {
	c.mu.Lock()
	cached := c.caps
	c.mu.Unlock()
	if cached != nil {
		return *cached, nil
	}
	return c.ControllerCapabilities(ctx)
}

// forgetCaps drops the remembered capabilities, so the next call asks the
// (possibly upgraded) driver again.
func (c *Client) forgetCaps() {
	c.mu.Lock()
	c.caps = nil
	c.capsGen++
	c.mu.Unlock()
}

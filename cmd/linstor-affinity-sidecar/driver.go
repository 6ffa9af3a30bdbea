package main

import (
	"context"
	"fmt"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar"
)

// csiDriver adapts the CSI client to what the reconcile loop asks.
type csiDriver struct {
	client *csiprobe.Client
}

// Ready is nil when Probe says ready and the driver reports topology.
func (d csiDriver) Ready(ctx context.Context) error {
	ready, err := d.client.Probe(ctx)
	if err != nil {
		return err
	}
	if !ready {
		return csiprobe.ErrNotReady
	}
	caps, err := d.client.PluginCapabilities(ctx)
	if err != nil {
		return err
	}
	if !caps.AccessibilityConstraints {
		return csiprobe.ErrNoTopology
	}
	return nil
}

// VolumeExists asks ControllerGetVolume.
func (d csiDriver) VolumeExists(ctx context.Context, volumeID string) (bool, string, error) {
	st, err := d.client.VolumeStatus(ctx, volumeID)
	if csiprobe.IsNotSupported(err) {
		return false, "", sidecar.ErrCheckUnsupported
	}
	if err != nil {
		return false, "", err
	}
	if st.Abnormal {
		return true, fmt.Sprintf("abnormal: %s", st.Message), nil
	}
	return st.Exists, "", nil
}

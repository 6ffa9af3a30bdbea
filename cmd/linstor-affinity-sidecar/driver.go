package main

import (
	"context"
	"fmt"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/controller"
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
		return false, "", controller.ErrCheckUnsupported
	}
	if err != nil {
		return false, "", err
	}
	if st.Abnormal {
		return true, fmt.Sprintf("abnormal: %s", st.Message), nil
	}
	return st.Exists, "", nil
}

// VolumeCondition describes ControllerGetVolume's answer for reports.
func (d csiDriver) VolumeCondition(ctx context.Context, volumeID string) (string, error) {
	st, err := d.client.VolumeStatus(ctx, volumeID)
	switch {
	case csiprobe.IsNotSupported(err):
		return "unknown (no GET_VOLUME)", nil
	case err != nil:
		return "", err
	case !st.Exists:
		return "not found", nil
	case st.Abnormal:
		return "abnormal: " + st.Message, nil
	}
	return "ok", nil
}

// Capacity is GetCapacity for a segment.
func (d csiDriver) Capacity(ctx context.Context, parameters, segment map[string]string) (int64, error) {
	return d.client.Capacity(ctx, parameters, segment)
}

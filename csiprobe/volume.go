package csiprobe

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// VolumeStatus is the driver's view of one volume.
type VolumeStatus struct {
	// Exists is false when the driver answered NotFound: the volume is
	// gone on the storage side, which is an answer, not a failure.
	Exists bool
	// HasCondition tells whether the driver reported a volume condition;
	// without one, Abnormal is false for lack of knowledge.
	HasCondition bool
	// Abnormal and Message are the volume condition: an abnormal volume is
	// not usable or not operating optimally, Message says why.
	Abnormal bool
	Message  string
	// CapacityBytes is the volume size the driver reports.
	CapacityBytes int64
	// PublishedNodeIDs are the nodes the volume is attached to.
	PublishedNodeIDs []string
}

// VolumeStatus asks the driver about one volume (ControllerGetVolume). It
// returns ErrNotSupported without calling when the driver lacks GET_VOLUME.
// A NotFound answer is Exists = false, not an error; every other failure is
// an error naming the volume.
func (c *Client) VolumeStatus(ctx context.Context, volumeID string) (VolumeStatus, error) {
	caps, err := c.controllerCaps(ctx)
	if err != nil {
		return VolumeStatus{}, fmt.Errorf("volume %s: %w", volumeID, err)
	}
	if !caps.GetVolume {
		return VolumeStatus{}, fmt.Errorf("volume %s: ControllerGetVolume: %w (no GET_VOLUME capability)", volumeID, ErrNotSupported)
	}

	var rsp *csi.ControllerGetVolumeResponse
	err = c.call(ctx, "ControllerGetVolume", func(ctx context.Context) error {
		var err error
		rsp, err = csi.NewControllerClient(c.conn).ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: volumeID})
		return err
	})
	if status.Code(err) == codes.NotFound {
		return VolumeStatus{}, nil
	}
	if err != nil {
		return VolumeStatus{}, fmt.Errorf("volume %s: %w", volumeID, err)
	}

	vs := VolumeStatus{
		Exists:           true,
		CapacityBytes:    rsp.GetVolume().GetCapacityBytes(),
		PublishedNodeIDs: rsp.GetStatus().GetPublishedNodeIds(),
	}
	if st := rsp.GetStatus(); st != nil {
		// A garbled condition must not hide that the volume exists; it is
		// reported as no condition.
		cond, found, err := legacyCondition(st.ProtoReflect().GetUnknown())
		if err != nil {
			klog.FromContext(ctx).V(4).Info("Ignoring malformed volume condition", "volume", volumeID, "err", err)
		} else {
			vs.HasCondition, vs.Abnormal, vs.Message = found, cond.abnormal, cond.message
		}
	}
	return vs, nil
}

package csiprobe

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// Capacity asks how many bytes the driver can still provision with the
// given StorageClass parameters in the given topology segment (GetCapacity).
// A nil or empty segment asks about the whole cluster. It returns
// ErrNotSupported without calling when the driver lacks GET_CAPACITY.
func (c *Client) Capacity(ctx context.Context, parameters map[string]string, segment map[string]string) (int64, error) {
	caps, err := c.controllerCaps(ctx)
	if err != nil {
		return 0, fmt.Errorf("segment %v: %w", segment, err)
	}
	if !caps.GetCapacity {
		return 0, fmt.Errorf("segment %v: GetCapacity: %w (no GET_CAPACITY capability)", segment, ErrNotSupported)
	}
	req := &csi.GetCapacityRequest{Parameters: parameters}
	if len(segment) > 0 {
		req.AccessibleTopology = &csi.Topology{Segments: segment}
	}
	var rsp *csi.GetCapacityResponse
	err = c.call(ctx, "GetCapacity", func(ctx context.Context) error {
		var err error
		rsp, err = csi.NewControllerClient(c.conn).GetCapacity(ctx, req)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("segment %v: %w", segment, err)
	}
	return rsp.GetAvailableCapacity(), nil
}

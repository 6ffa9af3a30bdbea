package csiprobe

import (
	"context"
	"fmt"
	"time"

	"k8s.io/klog/v2"
)

// DefaultProbeInterval is how often WaitDriver asks by default, the same
// pace as the kubernetes-csi sidecars' startup probe.
const DefaultProbeInterval = time.Second

// WaitDriver calls Discover every interval until the driver names itself or
// ctx ends, and returns what Discover said then: the Driver, with Discover's
// error when the driver is not fit to work with yet (not ready, no
// topology). A caller holds off acting on such a driver but need not wait
// for it. Failed calls are retried too: a driver restarting next to the
// sidecar answers Unavailable or times out for a while. It logs once per
// distinct failure, so a long wait stays one line in the pod log instead of
// one per attempt. An interval of zero or less means DefaultProbeInterval.
func (c *Client) WaitDriver(ctx context.Context, interval time.Duration) (Driver, error) {
	if interval <= 0 {
		interval = DefaultProbeInterval
	}
	log := klog.FromContext(ctx)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	last := ""
	for {
		d, err := c.Discover(ctx)
		if d.Name != "" {
			return d, err
		}
		if ctx.Err() != nil {
			return d, fmt.Errorf("csi address %s: waiting for the driver: %w", c.address, ctx.Err())
		}
		if err != nil && err.Error() != last {
			last = err.Error()
			log.Info("Waiting for the CSI driver", "address", c.address, "reason", last)
		}
		select {
		case <-ctx.Done():
			return d, fmt.Errorf("csi address %s: waiting for the driver: %w", c.address, ctx.Err())
		case <-ticker.C:
		}
	}
}

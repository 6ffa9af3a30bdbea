package csiprobe

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// DefaultProbeInterval is how often WaitReady asks by default, the same
// pace as the kubernetes-csi sidecars' startup probe.
const DefaultProbeInterval = time.Second

// WaitReady calls Probe every interval until the driver says it is ready or
// ctx ends. Errors are retried too: a driver restarting next to the sidecar
// answers Unavailable or times out for a while. It logs once per change of
// state (not ready, each distinct failure code, ready), so a long wait
// stays one line in the pod log instead of one per attempt. An interval of
// zero or less means DefaultProbeInterval.
func (c *Client) WaitReady(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultProbeInterval
	}
	log := klog.FromContext(ctx)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()

	last := ""
	for {
		ready, err := c.Probe(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("csi address %s: waiting for ready: %w", c.address, ctx.Err())
		}
		state := "not ready"
		switch {
		case err != nil:
			state = "failed: " + status.Code(err).String()
		case ready:
			log.Info("CSI driver is ready", "address", c.address)
			return nil
		}
		if state != last {
			if err != nil {
				log.Info("Waiting for the CSI driver: probe failed", "address", c.address, "err", err)
			} else {
				log.Info("Waiting for the CSI driver: not ready", "address", c.address)
			}
			last = state
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("csi address %s: waiting for ready: %w", c.address, ctx.Err())
		case <-ticker.C:
		}
	}
}

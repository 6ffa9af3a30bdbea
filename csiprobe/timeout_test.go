package csiprobe_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe/csifake"
)

func TestSlowDriverHitsTheCallTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	// Far beyond any plausible scheduling delay, far below the fake's delay.
	const margin = 15 * time.Second

	ignore := func(_ any, err error) error { return err }
	tests := []struct {
		method csifake.Method // the call made slow
		names  string         // what the error must mention
		call   func(context.Context, *csiprobe.Client) error
	}{
		{csifake.GetPluginInfo, "GetPluginInfo",
			func(ctx context.Context, c *csiprobe.Client) error { return ignore(c.DriverInfo(ctx)) }},
		{csifake.GetPluginCapabilities, "GetPluginCapabilities",
			func(ctx context.Context, c *csiprobe.Client) error { return ignore(c.PluginCapabilities(ctx)) }},
		{csifake.Probe, "Probe",
			func(ctx context.Context, c *csiprobe.Client) error { return ignore(c.Probe(ctx)) }},
		{csifake.ControllerGetCapabilities, "ControllerGetCapabilities",
			func(ctx context.Context, c *csiprobe.Client) error { return ignore(c.ControllerCapabilities(ctx)) }},
		{csifake.ControllerGetVolume, "volume slow-vol",
			func(ctx context.Context, c *csiprobe.Client) error { return ignore(c.VolumeStatus(ctx, "slow-vol")) }},
		{csifake.GetCapacity, "GetCapacity",
			func(ctx context.Context, c *csiprobe.Client) error { return ignore(c.Capacity(ctx, nil, nil)) }},
		{csifake.ControllerGetCapabilities, "driver " + csifake.DefaultDriverName,
			func(ctx context.Context, c *csiprobe.Client) error { return ignore(c.Discover(ctx)) }},
	}
	for _, tt := range tests {
		t.Run(string(tt.method)+"/"+tt.names, func(t *testing.T) {
			srv := csifake.Start(t, csifake.Config{})
			srv.SetVolume("slow-vol", csifake.Volume{})
			c := connect(t, srv, csiprobe.Options{Timeout: timeout})
			srv.SetDelay(tt.method, time.Hour)

			start := time.Now()
			err := tt.call(testContext(t), c)
			elapsed := time.Since(start)

			if status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("err = %v, want code DeadlineExceeded", err)
			}
			if !errors.Is(err, context.DeadlineExceeded) || !csiprobe.IsTransient(err) {
				t.Errorf("err = %v, want it to match context.DeadlineExceeded and be transient", err)
			}
			if !strings.Contains(err.Error(), tt.names) || !strings.Contains(err.Error(), timeout.String()) {
				t.Errorf("err = %v, want it to contain %q and the timeout", err, tt.names)
			}
			if elapsed > margin {
				t.Errorf("call returned after %s, want about %s", elapsed, timeout)
			}
		})
	}
}

func TestCallerContextStillBoundsTheCall(t *testing.T) {
	srv := csifake.Start(t, csifake.Config{})
	c := connect(t, srv, csiprobe.Options{Timeout: time.Hour})
	srv.SetDelay(csifake.Probe, time.Hour)

	ctx, cancel := context.WithCancel(testContext(t))
	go func() {
		// Cancel once the call is inside the driver.
		for srv.Calls(csifake.Probe) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	_, err := c.Probe(ctx)
	if status.Code(err) != codes.Canceled {
		t.Fatalf("err = %v, want Canceled", err)
	}
	if csiprobe.IsTransient(err) {
		t.Errorf("cancellation by the caller must not look transient: %v", err)
	}
}

func TestDriverSentDeadlineExceededIsATimeout(t *testing.T) {
	srv, c := setup(t, csifake.Config{})
	srv.SetError(csifake.GetPluginInfo, codes.DeadlineExceeded)
	_, err := c.DriverInfo(testContext(t))
	if status.Code(err) != codes.DeadlineExceeded || !errors.Is(err, context.DeadlineExceeded) || !csiprobe.IsTransient(err) {
		t.Fatalf("err = %v, want a transient DeadlineExceeded", err)
	}
}

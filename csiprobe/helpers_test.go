package csiprobe_test

import (
	"context"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe/csifake"
)

// callTimeout is generous: tests that are not about timeouts must never
// hit it on a loaded 2-core CI machine.
const callTimeout = 20 * time.Second

// setup starts a fake driver and connects a client to it; both are closed
// when the test ends.
func setup(t *testing.T, cfg csifake.Config) (*csifake.Server, *csiprobe.Client) {
	t.Helper()
	srv := csifake.Start(t, cfg)
	return srv, connect(t, srv, csiprobe.Options{Timeout: callTimeout})
}

func connect(t *testing.T, srv *csifake.Server, opts csiprobe.Options) *csiprobe.Client {
	t.Helper()
	c, err := csiprobe.Connect(testContext(t), srv.Address(), opts)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testContext is cancelled when the test ends, and after a minute at most
// so a broken test fails instead of hanging.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

package csiprobe_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe/csifake"
)

func TestReconnectsAfterDriverRestart(t *testing.T) {
	srv := csifake.Start(t, csifake.Config{DriverName: "before.example.com"})
	lost := make(chan struct{}, 10)
	c := connect(t, srv, csiprobe.Options{
		Timeout: callTimeout,
		OnConnectionLoss: func(context.Context) bool {
			lost <- struct{}{}
			return true
		},
	})
	ctx := testContext(t)

	if info, err := c.DriverInfo(ctx); err != nil || info.Name != "before.example.com" {
		t.Fatalf("before restart: %+v, %v", info, err)
	}
	if _, err := c.ControllerCapabilities(ctx); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	_, err := c.DriverInfo(ctx)
	if status.Code(err) != codes.Unavailable || !csiprobe.IsTransient(err) {
		t.Fatalf("while stopped: err = %v, want transient Unavailable", err)
	}

	srv.SetDriverInfo("after.example.com", "v2")
	srv.ResetCalls()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	// gRPC redials on demand and with backoff; keep asking until through.
	var info csiprobe.Info
	for {
		info, err = c.DriverInfo(ctx)
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if info.Name != "after.example.com" || info.Version != "v2" {
		t.Errorf("after restart: %+v, want the restarted driver's answer", info)
	}
	// The loss is reported by the dialer before it reconnects.
	select {
	case <-lost:
	default:
		t.Error("OnConnectionLoss was not called")
	}

	// The restarted driver may differ: capabilities are asked again.
	if _, err := c.VolumeStatus(ctx, "vol"); err != nil {
		t.Fatal(err)
	}
	if n := srv.Calls(csifake.ControllerGetCapabilities); n != 1 {
		t.Errorf("ControllerGetCapabilities called %d times after the restart, want 1", n)
	}
}

func TestCallsFailAfterClose(t *testing.T) {
	srv := csifake.Start(t, csifake.Config{})
	c, err := csiprobe.Connect(testContext(t), srv.Address(), csiprobe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DriverInfo(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	before := srv.Calls(csifake.GetPluginInfo)
	_, err = c.DriverInfo(testContext(t))
	if status.Code(err) != codes.Canceled {
		t.Errorf("after close: err = %v, want Canceled", err)
	}
	if n := srv.Calls(csifake.GetPluginInfo); n != before {
		t.Errorf("a closed client reached the driver")
	}
	if err := c.Close(); err == nil {
		t.Errorf("second close: want an error")
	}
}

func TestConnectAcceptsPlainPath(t *testing.T) {
	srv := csifake.Start(t, csifake.Config{})
	c, err := csiprobe.Connect(testContext(t), srv.SocketPath(), csiprobe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := c.DriverInfo(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if c.Timeout() != csiprobe.DefaultTimeout {
		t.Errorf("timeout = %s, want the default %s", c.Timeout(), csiprobe.DefaultTimeout)
	}
}

func TestConnectGivesUpWithoutASocket(t *testing.T) {
	addr := "unix://" + filepath.Join(t.TempDir(), "missing.sock")
	start := time.Now()
	_, err := csiprobe.Connect(testContext(t), addr, csiprobe.Options{ConnectTimeout: 300 * time.Millisecond})
	if err == nil {
		t.Fatal("connected to a missing socket")
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("err = %v, want it to name the address", err)
	}
	if elapsed := time.Since(start); elapsed > 20*time.Second {
		t.Errorf("Connect returned after %s, want about the connect timeout", elapsed)
	}
}

func TestConnectWaitsForALateDriver(t *testing.T) {
	srv := csifake.Start(t, csifake.Config{})
	srv.Stop() // the driver container has not created its socket yet

	done := make(chan error, 1)
	go func() {
		c, err := csiprobe.Connect(testContext(t), srv.Address(), csiprobe.Options{ConnectTimeout: time.Minute})
		if err == nil {
			_, err = c.DriverInfo(testContext(t))
			_ = c.Close()
		}
		done <- err
	}()
	// Let Connect find no socket first; the test holds either way.
	time.Sleep(200 * time.Millisecond)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("connect to a late driver: %v", err)
	}
}

func TestConnectionLossCallbackCanStopReconnecting(t *testing.T) {
	srv := csifake.Start(t, csifake.Config{})
	lost := make(chan struct{}, 10)
	c := connect(t, srv, csiprobe.Options{
		Timeout: callTimeout,
		OnConnectionLoss: func(context.Context) bool {
			lost <- struct{}{}
			return false
		},
	})
	ctx := testContext(t)
	if _, err := c.DriverInfo(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	// Calls make gRPC redial, which reports the loss.
	for len(lost) == 0 {
		if _, err := c.DriverInfo(ctx); err == nil {
			t.Fatal("call succeeded with the driver stopped")
		}
		if ctx.Err() != nil {
			t.Fatal("OnConnectionLoss was not called")
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.ResetCalls()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := c.DriverInfo(ctx); status.Code(err) != codes.Unavailable {
			t.Fatalf("after a refused reconnect: err = %v, want Unavailable", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := srv.Calls(csifake.GetPluginInfo); n != 0 {
		t.Errorf("restarted driver got %d calls, want none", n)
	}
}

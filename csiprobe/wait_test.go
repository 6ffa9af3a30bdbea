package csiprobe_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe/csifake"
)

const msgWaiting = "Waiting for the CSI driver"

// logContext returns a context whose logger records every line, and a
// function listing the messages logged so far at -v=0 (the gRPC traffic
// csi-lib-utils logs at -v=5 is left out).
func logContext(t *testing.T) (context.Context, func() []string) {
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
	ctx := klog.NewContext(testContext(t), logger)
	return ctx, func() []string {
		var msgs []string
		for _, e := range logger.GetSink().(ktesting.Underlier).GetBuffer().Data() {
			if e.Verbosity == 0 {
				msgs = append(msgs, e.Message)
			}
		}
		return msgs
	}
}

// waitCalls blocks until the fake has seen at least n calls of m.
func waitCalls(t *testing.T, srv *csifake.Server, m csifake.Method, n int) {
	t.Helper()
	ctx := testContext(t)
	for srv.Calls(m) < n {
		if ctx.Err() != nil {
			t.Fatalf("only %d %s calls, want %d", srv.Calls(m), m, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWaitDriverWhenAlreadyUp(t *testing.T) {
	srv, c := setup(t, csifake.Config{})
	ctx, logged := logContext(t)
	d, err := c.WaitDriver(ctx, 0) // 0: the default interval
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != csifake.DefaultDriverName || !d.Ready {
		t.Errorf("driver %+v, want %s and ready", d, csifake.DefaultDriverName)
	}
	if n := srv.Calls(csifake.GetPluginInfo); n != 1 {
		t.Errorf("GetPluginInfo called %d times, want 1", n)
	}
	if got := logged(); len(got) != 0 {
		t.Errorf("logged %q, want nothing", got)
	}
}

// A driver that names itself but is not ready is returned at once, with
// the reason: the caller holds off acting, it does not wait.
func TestWaitDriverReturnsADriverNotReadyYet(t *testing.T) {
	srv, c := setup(t, csifake.Config{Ready: csifake.ReadyFalse})
	d, err := c.WaitDriver(testContext(t), 2*time.Millisecond)
	if d.Name != csifake.DefaultDriverName || !errors.Is(err, csiprobe.ErrNotReady) {
		t.Fatalf("driver %+v, err %v; want the driver and ErrNotReady", d, err)
	}
	if n := srv.Calls(csifake.GetPluginInfo); n != 1 {
		t.Errorf("GetPluginInfo called %d times, want 1", n)
	}
}

func TestWaitDriverLogsOncePerFailure(t *testing.T) {
	srv, c := setup(t, csifake.Config{})
	srv.SetError(csifake.GetPluginInfo, codes.Unavailable)
	ctx, logged := logContext(t)
	type result struct {
		d   csiprobe.Driver
		err error
	}
	done := make(chan result, 1)
	go func() {
		d, err := c.WaitDriver(ctx, 2*time.Millisecond)
		done <- result{d, err}
	}()

	waitCalls(t, srv, csifake.GetPluginInfo, 5)
	srv.SetError(csifake.GetPluginInfo, codes.DeadlineExceeded)
	waitCalls(t, srv, csifake.GetPluginInfo, srv.Calls(csifake.GetPluginInfo)+5)
	srv.SetError(csifake.GetPluginInfo, codes.OK)

	r := <-done
	if r.err != nil || r.d.Name != csifake.DefaultDriverName {
		t.Fatalf("WaitDriver: %+v, %v", r.d, r.err)
	}
	if got := logged(); !slices.Equal(got, []string{msgWaiting, msgWaiting}) {
		t.Errorf("logged %q, want one line for each of the two failures", got)
	}
}

func TestWaitDriverStopsWithTheContext(t *testing.T) {
	srv, c := setup(t, csifake.Config{})
	srv.SetError(csifake.GetPluginInfo, codes.Unavailable)
	ctx, logged := logContext(t)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := c.WaitDriver(ctx, 2*time.Millisecond)
		done <- err
	}()

	waitCalls(t, srv, csifake.GetPluginInfo, 3)
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if got := logged(); !slices.Equal(got, []string{msgWaiting}) {
		t.Errorf("logged %q, want one waiting line", got)
	}
}

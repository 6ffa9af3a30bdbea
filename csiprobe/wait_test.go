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

	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe/csifake"
)

const (
	msgReady    = "CSI driver is ready"
	msgNotReady = "Waiting for the CSI driver: not ready"
	msgFailed   = "Waiting for the CSI driver: probe failed"
)

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

// waitCalls blocks until the fake has seen at least n Probe calls.
func waitCalls(t *testing.T, srv *csifake.Server, n int) {
	t.Helper()
	ctx := testContext(t)
	for srv.Calls(csifake.Probe) < n {
		if ctx.Err() != nil {
			t.Fatalf("only %d Probe calls, want %d", srv.Calls(csifake.Probe), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWaitReadyWhenAlreadyReady(t *testing.T) {
	srv, c := setup(t, csifake.Config{})
	ctx, logged := logContext(t)
	if err := c.WaitReady(ctx, 0); err != nil { // 0: the default interval
		t.Fatal(err)
	}
	if n := srv.Calls(csifake.Probe); n != 1 {
		t.Errorf("Probe called %d times, want 1", n)
	}
	if got := logged(); !slices.Equal(got, []string{msgReady}) {
		t.Errorf("logged %q, want one ready line", got)
	}
}

func TestWaitReadyLogsOncePerStateChange(t *testing.T) {
	srv, c := setup(t, csifake.Config{Ready: csifake.ReadyFalse})
	ctx, logged := logContext(t)
	done := make(chan error, 1)
	go func() { done <- c.WaitReady(ctx, 2*time.Millisecond) }()

	waitCalls(t, srv, 5)
	srv.SetError(csifake.Probe, codes.Unavailable)
	waitCalls(t, srv, srv.Calls(csifake.Probe)+5)
	srv.SetError(csifake.Probe, codes.DeadlineExceeded)
	waitCalls(t, srv, srv.Calls(csifake.Probe)+5)
	srv.SetError(csifake.Probe, codes.OK)
	waitCalls(t, srv, srv.Calls(csifake.Probe)+5)
	srv.SetReady(csifake.ReadyUnset)

	if err := <-done; err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	want := []string{msgNotReady, msgFailed, msgFailed, msgNotReady, msgReady}
	if got := logged(); !slices.Equal(got, want) {
		t.Errorf("logged %q\nwant %q", got, want)
	}
}

func TestWaitReadyStopsWithTheContext(t *testing.T) {
	srv, c := setup(t, csifake.Config{Ready: csifake.ReadyFalse})
	ctx, logged := logContext(t)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.WaitReady(ctx, 2*time.Millisecond) }()

	waitCalls(t, srv, 3)
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if got := logged(); !slices.Equal(got, []string{msgNotReady}) {
		t.Errorf("logged %q, want one not-ready line", got)
	}
}

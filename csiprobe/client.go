package csiprobe

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kubernetes-csi/csi-lib-utils/connection"
	"github.com/kubernetes-csi/csi-lib-utils/metrics"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultTimeout bounds each CSI call when Options.Timeout is zero; it is
// the default of the sidecar's --timeout, as in the upstream affinity
// controller.
const DefaultTimeout = time.Minute

// DefaultConnectTimeout bounds Connect when Options.ConnectTimeout is zero;
// it is what every kubernetes-csi sidecar waits for the socket.
const DefaultConnectTimeout = 30 * time.Second

// Options tune a Client.
type Options struct {
	// Timeout bounds every single CSI call (the sidecar's --timeout).
	// Zero: DefaultTimeout.
	Timeout time.Duration
	// ConnectTimeout bounds how long Connect waits for the socket to accept
	// a connection. Zero: DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// MetricsManager, when set, records the duration and gRPC status of
	// every call, as the kubernetes-csi sidecars do
	// (csi_sidecar_operations_seconds).
	MetricsManager metrics.CSIMetricsManager
	// OnConnectionLoss, when set, is called once each time the connection
	// to the driver is lost; returning false stops reconnecting (every
	// later call fails with Unavailable). Nil: reconnect. Cached
	// capabilities are dropped on a loss either way, since a restarted
	// driver may be a different version.
	OnConnectionLoss func(ctx context.Context) bool
}

// Client is a CSI client bound to one driver socket. It is safe for
// concurrent use.
type Client struct {
	address string
	timeout time.Duration
	conn    *grpc.ClientConn

	mu      sync.Mutex
	caps    *ControllerCaps // nil until fetched, and again after a connection loss
	capsGen uint64          // counts connection losses
}

// Connect connects to the CSI driver at address ("unix:///csi/csi.sock" or
// a plain path). It waits until the socket accepts a connection, bounded by
// ctx and Options.ConnectTimeout, but makes no CSI call.
func Connect(ctx context.Context, address string, opts Options) (*Client, error) {
	c := &Client{address: address, timeout: opts.Timeout}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	connectTimeout := opts.ConnectTimeout
	if connectTimeout <= 0 {
		connectTimeout = DefaultConnectTimeout
	}
	onLoss := opts.OnConnectionLoss
	conn, err := connection.Connect(ctx, address, opts.MetricsManager,
		connection.WithTimeout(connectTimeout),
		connection.OnConnectionLoss(func(ctx context.Context) bool {
			c.forgetCaps()
			if onLoss != nil {
				return onLoss(ctx)
			}
			return true
		}))
	if err != nil {
		return nil, fmt.Errorf("csi address %s: %w", address, err)
	}
	c.conn = conn
	return c, nil
}

// Close closes the connection; calls made afterwards fail with Canceled.
func (c *Client) Close() error {
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("csi address %s: %w", c.address, err)
	}
	return nil
}

// Address is the CSI address the client was connected to.
func (c *Client) Address() string {
	return c.address
}

// Timeout is the bound applied to each call.
func (c *Client) Timeout() time.Duration {
	return c.timeout
}

// call runs one CSI call with the per-call timeout and names the call in
// its error.
func (c *Client) call(ctx context.Context, method string, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	err := fn(ctx)
	if err == nil {
		return nil
	}
	// Not checked against ctx.Err(): the driver sees the propagated
	// deadline and often cancels the stream a moment before the local
	// timer fires. A driver's own DeadlineExceeded is a timeout too.
	if status.Code(err) == codes.DeadlineExceeded {
		return &timeoutError{method: method, timeout: c.timeout, err: err}
	}
	return fmt.Errorf("%s: %w", method, err)
}

// timeoutError is a call that timed out: no answer before its deadline (the
// per-call timeout or the caller's), or the driver's own DeadlineExceeded.
// It keeps the gRPC status (codes.DeadlineExceeded) and also matches
// context.DeadlineExceeded, so callers can test for either.
type timeoutError struct {
	method  string
	timeout time.Duration
	err     error
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("%s: timed out (call timeout %s): %v", e.method, e.timeout, e.err)
}

func (e *timeoutError) Unwrap() error { return e.err }

func (e *timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

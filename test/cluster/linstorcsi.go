package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path
// holds 108 bytes including the terminating NUL).
const maxSocketPath = 107

// LinstorCSIOptions configure a LINSTOR CSI driver run as a CSI controller.
type LinstorCSIOptions struct {
	// LinstorEndpoint is the LINSTOR REST URL (--linstor-endpoint). Required.
	LinstorEndpoint string
	// SocketPath is where the driver serves CSI; empty means <Dir>/csi.sock.
	SocketPath string
	// PropertyNamespace is --property-namespace; empty keeps the driver's
	// default ("Aux"). Piraeus Operator v2 passes "Aux/topology".
	PropertyNamespace string
	// NodeName is --node, only reported by the node service; empty means
	// "csi-controller".
	NodeName string
	// DefaultRemoteAccessPolicy is --default-remote-access-policy when set.
	DefaultRemoteAccessPolicy string
	// LogLevel is --log-level; empty means "debug", so tests see every call.
	LogLevel string
	// Dir holds the socket and the log; empty means a fresh temp dir, removed
	// by Stop (inside the cluster's dir when started through a Cluster).
	Dir string
	// BinDir holds linstor-csi; empty means <repo>/bin.
	BinDir string
	// ExtraArgs are appended to the flags above; Env to the environment.
	ExtraArgs []string
	Env       []string
}

// LinstorCSI is a running LINSTOR CSI driver serving CSI on a unix socket.
type LinstorCSI struct {
	*Process
	socketPath string
	ownDir     string
}

// Endpoint returns the CSI endpoint in the form sidecars take (unix://...).
func (l *LinstorCSI) Endpoint() string { return "unix://" + l.socketPath }

// SocketPath returns the socket's file path (--csi-address of sidecars).
func (l *LinstorCSI) SocketPath() string { return l.socketPath }

// Stop ends the driver and removes the temp dir it was given, if any.
func (l *LinstorCSI) Stop() error {
	err := l.Process.Stop()
	if l.ownDir != "" {
		err = errors.Join(err, os.RemoveAll(l.ownDir))
	}
	return err
}

// Restart restarts the driver and waits until its socket accepts
// connections again, like a container restart in the controller pod.
func (l *LinstorCSI) Restart(ctx context.Context) error {
	if err := l.Process.Restart(ctx); err != nil {
		return err
	}
	return waitSocket(ctx, l.Process, l.socketPath)
}

// StartLinstorCSI runs bin/linstor-csi as a CSI controller against a LINSTOR
// REST endpoint and returns once its socket accepts connections. The driver
// needs no kubelet: at start it only listens; its node service merely
// reports NodeName. It is started with KUBERNETES_SERVICE_HOST cleared so it
// never looks for an in-cluster API server.
func StartLinstorCSI(ctx context.Context, opts LinstorCSIOptions) (*LinstorCSI, error) {
	return startLinstorCSI(ctx, opts, StartProcess)
}

// StartLinstorCSI is the package function with the driver owned by c: its
// socket and log live in the cluster's dirs and c.Stop ends it.
func (c *Cluster) StartLinstorCSI(ctx context.Context, opts LinstorCSIOptions) (*LinstorCSI, error) {
	if opts.Dir == "" {
		dir, err := os.MkdirTemp(c.dir, "linstor-csi-")
		if err != nil {
			return nil, fmt.Errorf("linstor-csi dir: %w", err)
		}
		opts.Dir = dir
	}
	if opts.BinDir == "" {
		opts.BinDir = c.binDir
	}
	return startLinstorCSI(ctx, opts, c.StartProcess)
}

func startLinstorCSI(ctx context.Context, opts LinstorCSIOptions, start func(context.Context, ProcessSpec) (*Process, error)) (*LinstorCSI, error) {
	if opts.LinstorEndpoint == "" {
		return nil, errors.New("linstor-csi: no LINSTOR endpoint")
	}
	l := &LinstorCSI{}
	dir := opts.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "linstor-csi-")
		if err != nil {
			return nil, fmt.Errorf("linstor-csi dir: %w", err)
		}
		dir, l.ownDir = d, d
	}
	cleanup := func() {
		if l.ownDir != "" {
			_ = os.RemoveAll(l.ownDir) // failed start: nothing worth keeping
		}
	}
	l.socketPath = opts.SocketPath
	if l.socketPath == "" {
		l.socketPath = filepath.Join(dir, "csi.sock")
	}
	if len(l.socketPath) > maxSocketPath {
		cleanup()
		return nil, fmt.Errorf("linstor-csi: socket path %s is longer than %d bytes", l.socketPath, maxSocketPath)
	}
	node := opts.NodeName
	if node == "" {
		node = "csi-controller"
	}
	level := opts.LogLevel
	if level == "" {
		level = "debug"
	}
	args := []string{
		"--csi-endpoint=unix://" + l.socketPath,
		"--linstor-endpoint=" + opts.LinstorEndpoint,
		"--node=" + node,
		"--log-level=" + level,
	}
	if opts.PropertyNamespace != "" {
		args = append(args, "--property-namespace="+opts.PropertyNamespace)
	}
	if opts.DefaultRemoteAccessPolicy != "" {
		args = append(args, "--default-remote-access-policy="+opts.DefaultRemoteAccessPolicy)
	}
	args = append(args, opts.ExtraArgs...)
	env := append([]string{"KUBERNETES_SERVICE_HOST="}, opts.Env...)
	p, err := start(ctx, ProcessSpec{
		Name:    "linstor-csi",
		Path:    "linstor-csi",
		Args:    args,
		Env:     env,
		LogPath: filepath.Join(dir, "linstor-csi.log"),
		BinDir:  opts.BinDir,
	})
	if err != nil {
		cleanup()
		return nil, err
	}
	l.Process = p
	if err := waitSocket(ctx, p, l.socketPath); err != nil {
		_ = p.Kill()
		cleanup()
		return nil, fmt.Errorf("linstor-csi: %w", err)
	}
	return l, nil
}

// waitSocket waits until a unix socket accepts connections.
func waitSocket(ctx context.Context, p *Process, path string) error {
	return waitFor(ctx, p, "CSI socket "+path, func(ctx context.Context) error {
		d := net.Dialer{Timeout: time.Second}
		conn, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

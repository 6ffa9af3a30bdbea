package csifake

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
)

// Server is a running fake CSI driver. All methods are safe for concurrent
// use, including while clients are calling it.
type Server struct {
	path   string
	dir    string
	ownDir bool

	// life serialises Stop, Restart and Close.
	life   sync.Mutex
	grpc   *grpc.Server
	served chan struct{}

	state
}

// Start starts a fake driver for a test or benchmark and stops it, removing
// its socket directory, when the test ends. It fails the test if the socket
// cannot be served.
func Start(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	s, err := Listen(cfg)
	if err != nil {
		tb.Fatalf("csifake: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Listen starts a fake driver outside of a test. The caller must Close it.
func Listen(cfg Config) (*Server, error) {
	s := &Server{dir: cfg.Dir}
	if s.dir == "" {
		dir, err := os.MkdirTemp("", "csifake")
		if err != nil {
			return nil, fmt.Errorf("socket directory: %w", err)
		}
		s.dir, s.ownDir = dir, true
	}
	s.path = filepath.Join(s.dir, "csi.sock")
	s.state.init(cfg)
	if err := s.Restart(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Address is the CSI address of the fake, "unix://<socket path>", as the
// sidecar's --csi-address takes it.
func (s *Server) Address() string {
	return "unix://" + s.path
}

// SocketPath is the file system path of the fake's unix socket.
func (s *Server) SocketPath() string {
	return s.path
}

// Stop stops serving: open connections are closed, calls in flight are
// cancelled and the socket file is removed, as when the driver container
// dies. Answers, counters and the socket path are kept for Restart. Stop is
// idempotent.
func (s *Server) Stop() {
	s.life.Lock()
	defer s.life.Unlock()
	s.stopLocked()
}

// Restart serves again on the same socket path with the same answers, as
// when the driver container is restarted. It stops first if running.
func (s *Server) Restart() error {
	s.life.Lock()
	defer s.life.Unlock()
	s.stopLocked()

	// A socket file left by a killed process would make Listen fail.
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("socket %s: %w", s.path, err)
	}
	lis, err := net.Listen("unix", s.path)
	if err != nil {
		return fmt.Errorf("socket %s: %w", s.path, err)
	}
	srv := grpc.NewServer()
	csi.RegisterIdentityServer(srv, identity{s: &s.state})
	csi.RegisterControllerServer(srv, controller{s: &s.state})
	served := make(chan struct{})
	go func() {
		defer close(served)
		// Serve returns nil after Stop; any other error ends serving,
		// which clients see as a dead driver, the condition under test.
		_ = srv.Serve(lis)
	}()
	s.grpc, s.served = srv, served
	return nil
}

// Close stops the fake and removes the socket directory if the fake created
// it. The Server cannot be restarted afterwards.
func (s *Server) Close() {
	s.Stop()
	if s.ownDir {
		_ = os.RemoveAll(s.dir)
	}
}

func (s *Server) stopLocked() {
	if s.grpc == nil {
		return
	}
	s.grpc.Stop()
	<-s.served
	s.grpc, s.served = nil, nil
}

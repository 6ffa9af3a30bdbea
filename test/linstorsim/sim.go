package linstorsim

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPropertyNamespace is the namespace Piraeus Operator v2 passes to
// LINSTOR CSI (--property-namespace) and writes node topology under.
const DefaultPropertyNamespace = "Aux/topology"

// Options configure a simulator.
type Options struct {
	// Listen is the loopback address to serve on; default 127.0.0.1:0 (a
	// free port). Non-loopback addresses are refused.
	Listen string
	// TLS serves HTTPS with a certificate from an in-process CA.
	TLS bool
	// RequireClientCert refuses clients without a certificate signed by
	// that CA, like a LINSTOR controller with HTTPS client auth; implies TLS.
	RequireClientCert bool
	// PropertyNamespace is where AddNode writes node topology; default
	// DefaultPropertyNamespace.
	PropertyNamespace string
	// Realistic makes the resource lists behave like a real
	// linstor-server's: running state that changes between requests,
	// Outdated and Failed disks, the deletion window of removed replicas,
	// and no resources without volumes in the view (see realistic.go). Off,
	// every answer repeats the stored state byte for byte.
	Realistic bool
	// DeleteWindow is how long a removed replica stays listed in realistic
	// mode, half of it flagged DRBD_DELETE, then DELETE as well; 0 means
	// DefaultDeleteWindow, negative removes replicas at once.
	DeleteWindow time.Duration
}

// Sim is a running (after Start) LINSTOR REST API simulator. All methods
// are safe for concurrent use.
type Sim struct {
	opts Options

	st     *state
	dlog   *deletionLog
	faults *faultSet
	counts *counters
	pki    *pki

	api     *http.ServeMux
	lists   map[string]bool
	control *http.ServeMux

	// ticks counts the requests answered with live state (realistic mode).
	ticks atomic.Uint64

	mu   sync.Mutex
	srv  *http.Server
	url  string
	addr string // the address actually bound, reused on restart
}

// New returns a simulator with an empty cluster (just the default resource
// group). Call Start to serve it.
func New(opts Options) *Sim {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.PropertyNamespace == "" {
		opts.PropertyNamespace = DefaultPropertyNamespace
	}
	opts.PropertyNamespace = strings.TrimSuffix(opts.PropertyNamespace, "/")
	if opts.RequireClientCert {
		opts.TLS = true
	}
	if opts.Realistic && opts.DeleteWindow == 0 {
		opts.DeleteWindow = DefaultDeleteWindow
	}
	dlog := &deletionLog{}
	s := &Sim{
		opts:   opts,
		st:     newState(dlog),
		dlog:   dlog,
		faults: &faultSet{},
		counts: &counters{},
	}
	if opts.Realistic {
		s.st.deleteWindow = opts.DeleteWindow
	}
	s.api, s.lists = s.apiMux()
	s.control = s.controlMux()
	return s
}

// loopbackOnly refuses addresses other clients could reach.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q: only loopback addresses are allowed", addr)
	}
	return nil
}

// Start listens on the configured loopback address and serves in the
// background. Start after Close simulates a controller restart: same
// address, same CA, same state.
func (s *Sim) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("linstorsim: already started")
	}
	listen := s.opts.Listen
	if s.addr != "" {
		listen = s.addr
	}
	if err := loopbackOnly(listen); err != nil {
		return err
	}
	var tlsCfg *tls.Config
	if s.opts.TLS {
		if s.pki == nil {
			p, err := newPKI()
			if err != nil {
				return err
			}
			s.pki = p
		}
		var err error
		if tlsCfg, err = s.pki.serverConfig(s.opts.RequireClientCert); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	s.addr = ln.Addr().String()
	scheme := "http"
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
		scheme = "https"
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		// Refused TLS handshakes are expected in tests; keep them quiet.
		ErrorLog: log.New(discard{}, "", 0),
	}
	s.url = scheme + "://" + ln.Addr().String()
	srv := s.srv
	go func() { _ = srv.Serve(ln) }()
	return nil
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// URL is the base URL of the running simulator, e.g. http://127.0.0.1:41234.
func (s *Sim) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// PropertyNamespace is the namespace node topology is written under.
func (s *Sim) PropertyNamespace() string { return s.opts.PropertyNamespace }

// Close stops serving and drops open connections; the state is kept.
func (s *Sim) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil
	}
	err := s.srv.Close()
	s.srv = nil
	return err
}

// ServeHTTP dispatches the /_sim control API, and counts and perhaps
// spoils (per the active faults) every LINSTOR REST request.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_sim" || strings.HasPrefix(r.URL.Path, "/_sim/") {
		s.control.ServeHTTP(w, r)
		return
	}
	_, pattern := s.api.Handler(r)
	key := pattern
	if pattern == "/" {
		key = r.Method + " " + r.URL.Path + " (not simulated)"
	}
	w = s.counts.count(w, key)
	if f, ok := s.faults.take(r, s.lists[pattern]); ok {
		serveFaulty(w, r, s.api, f)
		return
	}
	s.api.ServeHTTP(w, r)
}

// apiMux routes the simulated LINSTOR REST API. The second result marks
// list routes, the ones partial-data faults thin out.
func (s *Sim) apiMux() (*http.ServeMux, map[string]bool) {
	m := http.NewServeMux()
	lists := map[string]bool{}
	handle := func(pattern string, f apiFunc) { m.Handle(pattern, f) }
	list := func(pattern string, f apiFunc) { handle(pattern, f); lists[pattern] = true }

	list("GET /v1/nodes", s.listNodes)
	handle("POST /v1/nodes", s.createNode)
	handle("GET /v1/nodes/{node}", s.getNode)
	handle("PUT /v1/nodes/{node}", s.modifyNode)
	handle("DELETE /v1/nodes/{node}", s.deleteNode)
	handle("DELETE /v1/nodes/{node}/lost", s.lostNode)
	handle("PUT /v1/nodes/{node}/evacuate", s.evacuateNode)
	handle("GET /v1/nodes/{node}/storage-pools", s.listNodePools)
	handle("POST /v1/nodes/{node}/storage-pools", s.createNodePool)
	handle("GET /v1/nodes/{node}/storage-pools/{pool}", s.getNodePool)
	list("GET /v1/view/storage-pools", s.listPoolView)

	handle("GET /v1/resource-groups", s.listRGs)
	handle("POST /v1/resource-groups", s.createRG)
	handle("GET /v1/resource-groups/{rg}", s.getRG)
	handle("PUT /v1/resource-groups/{rg}", s.modifyRG)
	handle("DELETE /v1/resource-groups/{rg}", s.deleteRG)
	handle("GET /v1/resource-groups/{rg}/volume-groups", s.listVGs)
	handle("POST /v1/resource-groups/{rg}/volume-groups", s.createVG)
	handle("POST /v1/resource-groups/{rg}/spawn", s.spawn)

	list("GET /v1/resource-definitions", s.listRDs)
	handle("POST /v1/resource-definitions", s.createRD)
	handle("GET /v1/resource-definitions/{rd}", s.getRD)
	handle("PUT /v1/resource-definitions/{rd}", s.modifyRD)
	handle("DELETE /v1/resource-definitions/{rd}", s.deleteRD)
	handle("GET /v1/resource-definitions/{rd}/volume-definitions", s.listVDs)
	handle("POST /v1/resource-definitions/{rd}/volume-definitions", s.createVD)
	handle("GET /v1/resource-definitions/{rd}/volume-definitions/{vnr}", s.getVD)
	handle("PUT /v1/resource-definitions/{rd}/volume-definitions/{vnr}", s.modifyVD)
	handle("DELETE /v1/resource-definitions/{rd}/volume-definitions/{vnr}", s.deleteVD)
	list("GET /v1/resource-definitions/{rd}/resources", s.listResources)
	handle("POST /v1/resource-definitions/{rd}/resources", s.createResources)
	handle("GET /v1/resource-definitions/{rd}/resources/{node}", s.getResource)
	handle("POST /v1/resource-definitions/{rd}/resources/{node}", s.createResource)
	handle("PUT /v1/resource-definitions/{rd}/resources/{node}", s.modifyResource)
	handle("DELETE /v1/resource-definitions/{rd}/resources/{node}", s.deleteResource)
	handle("GET /v1/resource-definitions/{rd}/resources/{node}/volumes", s.listVolumes)
	handle("GET /v1/resource-definitions/{rd}/resources/{node}/volumes/{vnr}", s.getVolume)
	handle("PUT /v1/resource-definitions/{rd}/resources/{node}/volumes/{vnr}", s.modifyVolume)
	handle("POST /v1/resource-definitions/{rd}/resources/{node}/make-available", s.makeAvailable)
	handle("POST /v1/resource-definitions/{rd}/autoplace", s.autoplace)
	handle("GET /v1/resource-definitions/{rd}/snapshots", s.listSnapshots)
	list("GET /v1/view/resources", s.resourceView)
	handle("GET /v1/view/snapshots", s.snapshotView)

	handle("GET /v1/key-value-store", s.listKV)
	handle("GET /v1/key-value-store/{kv}", s.getKV)
	handle("PUT /v1/key-value-store/{kv}", s.modifyKV)
	handle("DELETE /v1/key-value-store/{kv}", s.deleteKV)
	handle("GET /v1/remotes", s.listRemotes)
	handle("GET /v1/remotes/s3", s.emptyList)
	handle("GET /v1/remotes/linstor", s.emptyList)
	handle("GET /v1/remotes/ebs", s.emptyList)
	handle("GET /v1/controller/version", s.controllerVersion)
	handle("GET /health", s.health)
	handle("/", s.notSimulated)
	return m, lists
}

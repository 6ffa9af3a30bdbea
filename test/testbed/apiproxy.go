package testbed

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// APIProxy stands between the sidecar and the API server (on loopback,
// with a certificate of its own) and injects the faults
// the API server cannot give itself: watch events held back for a while
// (an informer lagging behind the writes it made, while lists, gets and
// writes pass at once), and a PV create that fails once with a timeout
// without being applied.
type APIProxy struct {
	srv    *httptest.Server
	target *url.URL

	mu         sync.Mutex
	watchDelay time.Duration
	failCreate int
	failed     int
}

// NewAPIProxy starts a proxy to the API server at target, trusting caPEM.
func NewAPIProxy(target string, caPEM []byte) (*APIProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("API proxy: no CA certificate")
	}
	p := &APIProxy{target: u}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true}
	rp.FlushInterval = -1                    // watch events go out as they come (or as held)
	rp.ErrorLog = log.New(io.Discard, "", 0) // refused while the API server restarts: expected
	rp.ModifyResponse = func(resp *http.Response) error {
		if isWatch(resp.Request) {
			resp.Body = newLaggingBody(resp.Body, p.delay)
		}
		return nil
	}
	// TLS in front too: client-go sends no bearer token over plain HTTP.
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.takeCreateFailure(r) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusGatewayTimeout)
			_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"request timed out (injected by the test bed's API proxy)","reason":"Timeout","code":504}`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	p.srv.EnableHTTP2 = true
	p.srv.StartTLS()
	return p, nil
}

// URL is the proxy's address for kubeconfigs.
func (p *APIProxy) URL() string { return p.srv.URL }

// CAPEM is the certificate clients of the proxy trust.
func (p *APIProxy) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
}

// SetWatchDelay holds every watch event that arrives from now on back by d
// (0: none), on open watches too.
func (p *APIProxy) SetWatchDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.watchDelay = d
}

// FailPVCreates makes the next n PV creates (not dry runs) fail with a
// timeout before they reach the API server.
func (p *APIProxy) FailPVCreates(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failCreate = n
}

// FailedCreates is how many PV creates the proxy failed so far.
func (p *APIProxy) FailedCreates() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// Close stops the proxy.
func (p *APIProxy) Close() error {
	p.srv.CloseClientConnections()
	p.srv.Close()
	return nil
}

func (p *APIProxy) delay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.watchDelay
}

func (p *APIProxy) takeCreateFailure(r *http.Request) bool {
	if r.Method != http.MethodPost || strings.TrimSuffix(r.URL.Path, "/") != "/api/v1/persistentvolumes" || r.URL.Query().Has("dryRun") {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failCreate == 0 {
		return false
	}
	p.failCreate--
	p.failed++
	return true
}

func isWatch(r *http.Request) bool {
	if r == nil {
		return false
	}
	v := r.URL.Query().Get("watch")
	return v == "true" || v == "1"
}

// laggingBody hands out what the API server sent only once it is delay old,
// in order: a watch whose events arrive late, lists and writes unaffected.
type laggingBody struct {
	src   io.ReadCloser
	delay func() time.Duration
	ch    chan chunk
	cur   []byte
	err   error
}

type chunk struct {
	data []byte
	at   time.Time // when it may go out
	err  error
}

func newLaggingBody(src io.ReadCloser, delay func() time.Duration) *laggingBody {
	b := &laggingBody{src: src, delay: delay, ch: make(chan chunk, 1024)}
	go func() {
		defer close(b.ch)
		for {
			buf := make([]byte, 32*1024)
			n, err := src.Read(buf)
			if n > 0 {
				b.ch <- chunk{data: buf[:n], at: time.Now().Add(delay())}
			}
			if err != nil {
				b.ch <- chunk{err: err, at: time.Now()}
				return
			}
		}
	}()
	return b
}

func (b *laggingBody) Read(p []byte) (int, error) {
	for len(b.cur) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		c, ok := <-b.ch
		if !ok {
			return 0, io.EOF
		}
		if wait := time.Until(c.at); wait > 0 {
			time.Sleep(wait)
		}
		b.cur, b.err = c.data, c.err
	}
	n := copy(p, b.cur)
	b.cur = b.cur[n:]
	return n, nil
}

func (b *laggingBody) Close() error { return b.src.Close() }

// startAPIProxy puts an APIProxy in front of the API server for the
// sidecar (Options.APIProxy) and points the sidecar's kubeconfig at it.
func (b *Bed) startAPIProxy() error {
	cfg := b.Cluster.RESTConfig()
	p, err := NewAPIProxy(cfg.Host, cfg.CAData)
	if err != nil {
		return fmt.Errorf("API proxy: %w", err)
	}
	b.APIProxy = p
	return rewriteKubeconfigServer(b.sidecarKubeconfig, p.URL(), p.CAPEM())
}

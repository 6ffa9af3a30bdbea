package sidecar

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net/http"
	"os"
	"strings"

	lapi "github.com/LINBIT/golinstor/client"
)

// Why this file exists: at 10,000 volumes LINSTOR's resource view is about
// 28 MB of JSON and the resource definition list about 4 MB. Decoding them
// into golinstor's types takes about a second of CPU and a hundred MB of
// short-lived memory, every cycle, although almost every cycle sees exactly
// the bytes of the last one. BulkTransport sits under golinstor (so its
// controller failover, authentication and error handling stay in charge) and,
// for the three bulk lists only, hashes the answer as it streams by, and
// either discards it (same bytes as last time) or decodes only the fields
// decisions need. golinstor itself then only ever decodes "[]".

// BulkTransport is the HTTP transport of the sidecar's LINSTOR client. It
// acts only on requests whose context carries a bulk slot (see Linstor.Fetch);
// everything else passes through untouched.
type BulkTransport struct {
	base http.RoundTripper
	seed maphash.Seed
}

// NewBulkTransport wraps base (nil: a clone of http.DefaultTransport).
func NewBulkTransport(base http.RoundTripper) *BulkTransport {
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	return &BulkTransport{base: base, seed: maphash.MakeSeed()}
}

// bulkSlot is one bulk read: what the transport should do with the answer,
// and what it saw.
type bulkSlot struct {
	// decode, when set, reads the body (through the hasher); nil: only hash.
	decode func(io.Reader) error
	// sum and size describe the body that was read.
	sum  uint64
	size int64
	// seen is set once a 200 answer went through the transport.
	seen bool
	err  error
}

type bulkSlotKey struct{}

func withBulkSlot(ctx context.Context, s *bulkSlot) context.Context {
	return context.WithValue(ctx, bulkSlotKey{}, s)
}

// RoundTrip implements http.RoundTripper.
func (t *BulkTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	slot, _ := req.Context().Value(bulkSlotKey{}).(*bulkSlot)
	if slot == nil || err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	var h maphash.Hash
	h.SetSeed(t.seed)
	counted := &countingWriter{w: &h}
	var readErr error
	if slot.decode != nil {
		readErr = slot.decode(io.TeeReader(resp.Body, counted))
	}
	if readErr == nil {
		// Whatever the decoder left (trailing whitespace) belongs to the
		// answer too: the sum must cover every byte.
		_, readErr = io.Copy(counted, resp.Body)
	}
	_ = resp.Body.Close()
	slot.seen, slot.sum, slot.size, slot.err = true, h.Sum64(), counted.n, readErr
	if readErr != nil {
		return nil, fmt.Errorf("read %s: %w", req.URL.Path, readErr)
	}
	resp.Body = io.NopCloser(strings.NewReader("[]"))
	resp.ContentLength = 2
	resp.Header.Del("Content-Length")
	return resp, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// The fields of LINSTOR's answers that decisions use (see BuildView). Every
// other field is skipped by the decoder without being stored.
type (
	leanNode struct {
		Name  string            `json:"name"`
		Props map[string]string `json:"props"`
	}
	leanVD struct {
		VolumeNumber *int32            `json:"volume_number"`
		Props        map[string]string `json:"props"`
	}
	leanRD struct {
		Name              string            `json:"name"`
		Props             map[string]string `json:"props"`
		VolumeDefinitions []leanVD          `json:"volume_definitions"`
	}
	leanResource struct {
		Name     string   `json:"name"`
		NodeName string   `json:"node_name"`
		Flags    []string `json:"flags"`
	}
)

func decodeNodes(r io.Reader) ([]lapi.Node, error) {
	lean, err := decodeList[leanNode](r)
	if err != nil {
		return nil, fmt.Errorf("decode nodes: %w", err)
	}
	out := make([]lapi.Node, len(lean))
	for i, n := range lean {
		out[i] = lapi.Node{Name: n.Name, Props: n.Props}
	}
	return out, nil
}

// rdKeep are the only resource and volume definition properties decisions
// read; the others are dropped right after decoding.
var rdKeep = []string{SkipRDKey, SavedPVKey}

func keepProps(p map[string]string) map[string]string {
	var out map[string]string
	for _, k := range rdKeep {
		if v, ok := p[k]; ok {
			if out == nil {
				out = make(map[string]string, len(rdKeep))
			}
			out[k] = v
		}
	}
	return out
}

func decodeRDs(r io.Reader) ([]leanRD, error) {
	lean, err := decodeList(r, func(rd *leanRD) {
		rd.Props = keepProps(rd.Props)
		for j := range rd.VolumeDefinitions {
			rd.VolumeDefinitions[j].Props = keepProps(rd.VolumeDefinitions[j].Props)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("decode resource definitions: %w", err)
	}
	return lean, nil
}

func decodeResources(r io.Reader) ([]leanResource, error) {
	lean, err := decodeList[leanResource](r)
	if err != nil {
		return nil, fmt.Errorf("decode resources: %w", err)
	}
	return lean, nil
}

// decodeList decodes a JSON array one element at a time, so the decoder holds
// one element in memory rather than the whole answer (28 MB for the resource
// view at 10,000 volumes), and trims each element as it comes (trim may be
// nil). null decodes as an empty list.
func decodeList[T any](r io.Reader, trim ...func(*T)) ([]T, error) {
	dec := json.NewDecoder(r)
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return []T{}, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, fmt.Errorf("expected a JSON array, got %v", tok)
	}
	out := []T{}
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		for _, t := range trim {
			t(&v)
		}
		out = append(out, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return out, nil
}

// NewLinstorClient builds the sidecar's golinstor client from golinstor's
// LS_* environment, on a BulkTransport so Fetch can skip unchanged answers.
// TLS is configured from the same variables golinstor reads (LS_ROOT_CA,
// LS_USER_CERTIFICATE, LS_USER_KEY and their *_FILE forms, files read at each
// handshake so rotated certificates are picked up); authentication,
// controller list and failover stay golinstor's.
func NewLinstorClient(opts ...lapi.Option) (*lapi.Client, *BulkTransport, error) {
	base, err := linstorBaseTransport()
	if err != nil {
		return nil, nil, err
	}
	bt := NewBulkTransport(base)
	c, err := lapi.NewClient(append([]lapi.Option{lapi.HTTPClient(&http.Client{Transport: bt})}, opts...)...)
	if err != nil {
		return nil, nil, err
	}
	return c, bt, nil
}

// linstorBaseTransport is golinstor's HTTP client setup, written for a
// transport: no TLS variable set means the default transport.
func linstorBaseTransport() (http.RoundTripper, error) {
	env := func(name string) (string, bool) { return os.LookupEnv(name) }
	certFile, haveCertFile := env(lapi.UserCertFileEnv)
	certPEM, haveCert := env(lapi.UserCertEnv)
	keyFile, haveKeyFile := env(lapi.UserKeyFileEnv)
	keyPEM, haveKey := env(lapi.UserKeyEnv)
	caFile, haveCAFile := env(lapi.RootCAFileEnv)
	caPEM, haveCA := env(lapi.RootCAEnv)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if (haveKey || haveKeyFile) != (haveCert || haveCertFile) {
		return nil, fmt.Errorf("%s[_FILE] and %s[_FILE]: set both or neither", lapi.UserKeyEnv, lapi.UserCertEnv)
	}
	if !haveCert && !haveCertFile && !haveKey && !haveKeyFile && !haveCA && !haveCAFile {
		return tr, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if haveCAFile {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", lapi.RootCAFileEnv, err)
		}
		caPEM, haveCA = string(pem), true
	}
	if haveCA {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(caPEM)) {
			return nil, errors.New(lapi.RootCAEnv + ": no valid certificate")
		}
		cfg.RootCAs = pool
	}
	switch {
	case haveCert && haveKey && !haveCertFile && !haveKeyFile:
		pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
		if err != nil {
			return nil, fmt.Errorf("LINSTOR client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	case haveCert || haveCertFile:
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, k := certPEM, keyPEM
			if haveCertFile {
				b, err := os.ReadFile(certFile)
				if err != nil {
					return nil, fmt.Errorf("read %s: %w", lapi.UserCertFileEnv, err)
				}
				c = string(b)
			}
			if haveKeyFile {
				b, err := os.ReadFile(keyFile)
				if err != nil {
					return nil, fmt.Errorf("read %s: %w", lapi.UserKeyFileEnv, err)
				}
				k = string(b)
			}
			pair, err := tls.X509KeyPair([]byte(c), []byte(k))
			if err != nil {
				return nil, fmt.Errorf("LINSTOR client certificate: %w", err)
			}
			return &pair, nil
		}
	}
	tr.TLSClientConfig = cfg
	return tr, nil
}

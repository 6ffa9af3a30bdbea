package linstorsim

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/LINBIT/golinstor/client"
)

// errNoTLS is returned by the TLS helpers of a plain-HTTP simulator.
var errNoTLS = errors.New("linstorsim: TLS is not enabled (Options.TLS)")

// ClientFiles are the PEM files a LINSTOR client needs, named like the keys
// of the Secret Piraeus mounts into the CSI controller (ca.crt, tls.crt,
// tls.key); point LS_ROOT_CA_FILE, LS_USER_CERTIFICATE_FILE and
// LS_USER_KEY_FILE at them.
type ClientFiles struct {
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// authority returns the CA, which exists once a TLS simulator started.
func (s *Sim) authority() *pki {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pki
}

// CACertPEM returns the CA that signed the server certificate, or nil
// without TLS (or before Start).
func (s *Sim) CACertPEM() []byte {
	p := s.authority()
	if p == nil {
		return nil
	}
	return append([]byte(nil), p.caPEM...)
}

// IssueClientCert signs a client certificate the server accepts.
func (s *Sim) IssueClientCert(commonName string) (certPEM, keyPEM []byte, err error) {
	p := s.authority()
	if p == nil {
		return nil, nil, errNoTLS
	}
	return p.issue(commonName, false)
}

// WriteClientFiles writes ca.crt, tls.crt and tls.key (a fresh client
// certificate) into dir, for a client running as a separate process.
func (s *Sim) WriteClientFiles(dir string) (ClientFiles, error) {
	p := s.authority()
	if p == nil {
		return ClientFiles{}, errNoTLS
	}
	certPEM, keyPEM, err := p.issue("linstorsim-client", false)
	if err != nil {
		return ClientFiles{}, err
	}
	files := ClientFiles{
		CA:   filepath.Join(dir, "ca.crt"),
		Cert: filepath.Join(dir, "tls.crt"),
		Key:  filepath.Join(dir, "tls.key"),
	}
	for path, data := range map[string][]byte{files.CA: p.caPEM, files.Cert: certPEM, files.Key: keyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return ClientFiles{}, fmt.Errorf("write %s: %w", path, err)
		}
	}
	return files, nil
}

// ClientTLSConfig trusts the simulator's CA and, with withCert, presents a
// fresh client certificate.
func (s *Sim) ClientTLSConfig(withCert bool) (*tls.Config, error) {
	p := s.authority()
	if p == nil {
		return nil, errNoTLS
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.pool}
	if withCert {
		certPEM, keyPEM, err := p.issue("linstorsim-client", false)
		if err != nil {
			return nil, err
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("load client key pair: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// HTTPClient returns an HTTP client that reaches this simulator, with a
// client certificate when TLS is on.
func (s *Sim) HTTPClient() (*http.Client, error) {
	if s.authority() == nil {
		return &http.Client{}, nil
	}
	cfg, err := s.ClientTLSConfig(true)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}, nil
}

// NewClient returns a golinstor client for this simulator (quiet, with a
// client certificate when TLS is on); opts are applied last.
func (s *Sim) NewClient(opts ...client.Option) (*client.Client, error) {
	u, err := url.Parse(s.URL())
	if err != nil {
		return nil, fmt.Errorf("simulator url %q: %w", s.URL(), err)
	}
	hc, err := s.HTTPClient()
	if err != nil {
		return nil, err
	}
	all := append([]client.Option{client.BaseURL(u), client.HTTPClient(hc), client.Log(nil)}, opts...)
	c, err := client.NewClient(all...)
	if err != nil {
		return nil, fmt.Errorf("golinstor client for %s: %w", u, err)
	}
	return c, nil
}

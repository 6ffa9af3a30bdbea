package linstor

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	lapi "github.com/LINBIT/golinstor/client"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/podconfig"
)

// NewLinstorClient builds a LINSTOR client from s: golinstor's client, on a
// BulkTransport so Fetch can read the bulk lists lean. It is the one way the
// program builds a LINSTOR client (the loop, check and migrate-properties),
// and everything it is built from is in s: controllers, basic
// authentication, bearer token and TLS are handed to golinstor as its
// options, never through the process environment. Controller failover,
// authentication and error handling stay golinstor's. opts are applied
// last (a logger; tests point it elsewhere).
func NewLinstorClient(s podconfig.Linstor, opts ...lapi.Option) (*lapi.Client, *BulkTransport, error) {
	base, err := linstorTransport(s)
	if err != nil {
		return nil, nil, err
	}
	bt := NewBulkTransport(base)
	options := []lapi.Option{
		lapi.HTTPClient(&http.Client{Transport: bt}),
		lapi.Controllers(controllerURLs(s)),
		lapi.BasicAuth(&lapi.BasicAuthCfg{Username: s.Username, Password: s.Password}),
	}
	if s.BearerTokenFile != "" {
		options = append(options, lapi.BearerTokenFromFile(s.BearerTokenFile))
	}
	c, err := lapi.NewClient(append(options, opts...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("LINSTOR client: %w", err)
	}
	return c, bt, nil
}

// controllerURLs lists s's controllers (golinstor's default, localhost, if
// none) for golinstor's Controllers option. golinstor chooses https for a
// controller given without a scheme (or as linstor://) only when its TLS
// variables are in the environment; s may come from elsewhere, so with TLS
// settings such a controller gets golinstor's own linstor+ssl:// scheme,
// which it reads as https on port 3371 unless another is given.
func controllerURLs(s podconfig.Linstor) []string {
	list := strings.Split(s.Controllers, ",")
	if s.Controllers == "" {
		list = []string{"localhost"}
	}
	if !s.TLS() {
		return list
	}
	for i, c := range list {
		if rest, ok := strings.CutPrefix(c, "linstor://"); ok {
			list[i] = "linstor+ssl://" + rest
		} else if !strings.Contains(c, "://") {
			list[i] = "linstor+ssl://" + c
		}
	}
	return list
}

// linstorTransport is the HTTP transport for s: TLS as golinstor sets it
// up from the same settings (a CA, a client certificate and key as PEM or
// files; files read at each handshake), the default transport without any.
// It is the program's only TLS setup for LINSTOR: golinstor's own, built
// from the environment, is replaced by the HTTPClient option.
func linstorTransport(s podconfig.Linstor) (http.RoundTripper, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	haveCert := s.UserCertificate != "" || s.UserCertificateFile != ""
	haveKey := s.UserKey != "" || s.UserKeyFile != ""
	if haveKey != haveCert {
		return nil, fmt.Errorf("%s[_FILE] and %s[_FILE]: set both or neither", lapi.UserKeyEnv, lapi.UserCertEnv)
	}
	if !s.TLS() {
		return tr, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	caPEM := s.RootCA
	if s.RootCAFile != "" {
		pem, err := os.ReadFile(s.RootCAFile)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", lapi.RootCAFileEnv, err)
		}
		caPEM = string(pem)
	}
	if caPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(caPEM)) {
			return nil, errors.New(lapi.RootCAEnv + ": no valid certificate")
		}
		cfg.RootCAs = pool
	}
	switch {
	case !haveCert:
	case s.UserCertificateFile == "" && s.UserKeyFile == "":
		pair, err := tls.X509KeyPair([]byte(s.UserCertificate), []byte(s.UserKey))
		if err != nil {
			return nil, fmt.Errorf("LINSTOR client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	default:
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			certPEM, keyPEM := s.UserCertificate, s.UserKey
			if s.UserCertificateFile != "" {
				b, err := os.ReadFile(s.UserCertificateFile)
				if err != nil {
					return nil, fmt.Errorf("read %s: %w", lapi.UserCertFileEnv, err)
				}
				certPEM = string(b)
			}
			if s.UserKeyFile != "" {
				b, err := os.ReadFile(s.UserKeyFile)
				if err != nil {
					return nil, fmt.Errorf("read %s: %w", lapi.UserKeyFileEnv, err)
				}
				keyPEM = string(b)
			}
			pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
			if err != nil {
				return nil, fmt.Errorf("LINSTOR client certificate: %w", err)
			}
			return &pair, nil
		}
	}
	tr.TLSClientConfig = cfg
	return tr, nil
}

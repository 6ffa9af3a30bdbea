package linstor

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lapi "github.com/LINBIT/golinstor/client"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/podconfig"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
)

// selfSigned returns a PEM certificate and key for tests.
func selfSigned(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

// The transport under golinstor sets TLS up from the settings with
// golinstor's rules.
func TestLinstorTransportFollowsGolinstorsRules(t *testing.T) {
	tlsOf := func(t *testing.T, s podconfig.Linstor) *tls.Config {
		t.Helper()
		rt, err := linstorTransport(s)
		if err != nil {
			t.Fatal(err)
		}
		return rt.(*http.Transport).TLSClientConfig
	}
	if cfg := tlsOf(t, podconfig.Linstor{Controllers: "http://linstor:3370"}); cfg != nil && (cfg.RootCAs != nil || len(cfg.Certificates) > 0 || cfg.GetClientCertificate != nil) {
		t.Fatalf("no TLS setting: got a TLS setup %+v", cfg)
	}
	certPEM, keyPEM := selfSigned(t)

	t.Run("CA and client certificate as PEM", func(t *testing.T) {
		cfg := tlsOf(t, podconfig.Linstor{RootCA: certPEM, UserCertificate: certPEM, UserKey: keyPEM})
		if cfg.RootCAs == nil || len(cfg.Certificates) != 1 {
			t.Fatalf("TLS setup %+v, want the CA and one client certificate", cfg)
		}
	})
	t.Run("files are read at each handshake", func(t *testing.T) {
		dir := t.TempDir()
		certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		if err := os.WriteFile(certFile, []byte(certPEM), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, []byte(keyPEM), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := tlsOf(t, podconfig.Linstor{UserCertificateFile: certFile, UserKeyFile: keyFile})
		if cfg.GetClientCertificate == nil {
			t.Fatal("no client certificate callback for *_FILE settings")
		}
		if _, err := cfg.GetClientCertificate(nil); err != nil {
			t.Fatalf("client certificate from files: %v", err)
		}
		if err := os.Remove(certFile); err != nil {
			t.Fatal(err)
		}
		if _, err := cfg.GetClientCertificate(nil); err == nil {
			t.Fatal("a removed certificate file still gave a certificate: files are not read at each handshake")
		}
	})
	t.Run("key without certificate is refused", func(t *testing.T) {
		if _, err := linstorTransport(podconfig.Linstor{UserKey: keyPEM}); err == nil {
			t.Fatal("a key without a certificate was accepted")
		}
	})
	t.Run("a CA that is not PEM is refused", func(t *testing.T) {
		if _, err := linstorTransport(podconfig.Linstor{RootCA: "not a certificate"}); err == nil {
			t.Fatal("a bad CA was accepted")
		}
	})
}

// The client NewLinstorClient builds from the settings reaches a LINSTOR
// controller that asks for a client certificate exactly when golinstor's
// own client, built from the same settings in the environment, does: the
// two TLS setups cannot drift apart unnoticed. The settings never pass
// through the environment on the sidecar's side (it is cleared).
func TestLinstorClientConnectsWhereGolinstorDoes(t *testing.T) {
	sim := linstorsim.New(linstorsim.Options{RequireClientCert: true})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	if err := sim.AddNode("n1", nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files, err := sim.WriteClientFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := sim.IssueClientCert("sidecar")
	if err != nil {
		t.Fatal(err)
	}
	caPEM := string(sim.CACertPEM())
	// golinstor cannot parse an IP address without a scheme.
	hostPort := strings.Replace(strings.TrimPrefix(sim.URL(), "https://"), "127.0.0.1", "localhost", 1)
	other, _ := selfSigned(t)

	cases := []struct {
		name    string
		env     map[string]string
		reaches bool
	}{
		{"PEM content", map[string]string{"LS_CONTROLLERS": sim.URL(), "LS_ROOT_CA": caPEM, "LS_USER_CERTIFICATE": string(certPEM), "LS_USER_KEY": string(keyPEM)}, true},
		{"files", map[string]string{"LS_CONTROLLERS": sim.URL(), "LS_ROOT_CA_FILE": files.CA, "LS_USER_CERTIFICATE_FILE": files.Cert, "LS_USER_KEY_FILE": files.Key}, true},
		{"controller without a scheme", map[string]string{"LS_CONTROLLERS": hostPort, "LS_ROOT_CA_FILE": files.CA, "LS_USER_CERTIFICATE_FILE": files.Cert, "LS_USER_KEY_FILE": files.Key}, true},
		{"linstor+ssl scheme", map[string]string{"LS_CONTROLLERS": "linstor+ssl://" + hostPort, "LS_ROOT_CA": caPEM, "LS_USER_CERTIFICATE": string(certPEM), "LS_USER_KEY": string(keyPEM)}, true},
		{"no client certificate", map[string]string{"LS_CONTROLLERS": sim.URL(), "LS_ROOT_CA": caPEM}, false},
		{"another CA", map[string]string{"LS_CONTROLLERS": sim.URL(), "LS_ROOT_CA": other, "LS_USER_CERTIFICATE": string(certPEM), "LS_USER_KEY": string(keyPEM)}, false},
		{"no TLS settings", map[string]string{"LS_CONTROLLERS": sim.URL()}, false},
	}
	reaches := func(c *lapi.Client) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := c.Nodes.GetAll(ctx)
		return err
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, name := range podconfig.LinstorEnv() {
				t.Setenv(name, tc.env[name])
				if tc.env[name] == "" {
					_ = os.Unsetenv(name)
				}
			}
			theirs, err := lapi.NewClient(lapi.Log(fixture.QuietLog{}))
			if err != nil {
				t.Fatal(err)
			}
			theirErr := reaches(theirs)

			settings, _ := podconfig.LinstorFrom(os.LookupEnv)
			for _, name := range podconfig.LinstorEnv() {
				_ = os.Unsetenv(name)
			}
			ours, _, err := NewLinstorClient(settings, lapi.Log(fixture.QuietLog{}))
			if err != nil {
				t.Fatal(err)
			}
			ourErr := reaches(ours)
			if (ourErr == nil) != (theirErr == nil) || (ourErr == nil) != tc.reaches {
				t.Fatalf("NewLinstorClient: %v; golinstor from the environment: %v; want reached = %v", ourErr, theirErr, tc.reaches)
			}
		})
	}
}

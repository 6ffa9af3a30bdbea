package linstorsim

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/LINBIT/golinstor/client"
)

func TestTLSWithRequiredClientCertificates(t *testing.T) {
	s, c := startSim(t, Options{RequireClientCert: true})
	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") {
		t.Fatalf("url = %s", s.URL())
	}
	threeNodes(t, s)

	// The helper client presents a certificate: accepted.
	nodes, err := c.Nodes.GetAll(tctx(t))
	must(t, err)
	if len(nodes) != 3 {
		t.Errorf("%d nodes", len(nodes))
	}

	// A client that trusts the CA but has no certificate: refused.
	noCert, err := s.ClientTLSConfig(false)
	must(t, err)
	u, _ := url.Parse(s.URL())
	bare, err := client.NewClient(client.BaseURL(u), client.Log(nil),
		client.HTTPClient(&http.Client{Transport: &http.Transport{TLSClientConfig: noCert}}))
	must(t, err)
	if _, err := bare.Nodes.GetAll(tctx(t)); err == nil {
		t.Fatal("client without certificate was served")
	}

	// A certificate from another CA: refused.
	other := New(Options{TLS: true})
	must(t, other.Start())
	defer other.Close()
	foreignCert, foreignKey, err := other.IssueClientCert("intruder")
	must(t, err)
	pair, err := tls.X509KeyPair(foreignCert, foreignKey)
	must(t, err)
	foreign := noCert.Clone()
	foreign.Certificates = []tls.Certificate{pair}
	intruder, err := client.NewClient(client.BaseURL(u), client.Log(nil),
		client.HTTPClient(&http.Client{Transport: &http.Transport{TLSClientConfig: foreign}}))
	must(t, err)
	if _, err := intruder.Nodes.GetAll(tctx(t)); err == nil {
		t.Fatal("client with a foreign certificate was served")
	}
}

func TestWriteClientFilesGiveAWorkingClientIdentity(t *testing.T) {
	s, _ := startSim(t, Options{RequireClientCert: true})
	must(t, s.AddNode("a", nil))
	dir := t.TempDir()
	files, err := s.WriteClientFiles(dir)
	must(t, err)
	for _, p := range []string{files.CA, files.Cert, files.Key} {
		if !strings.HasPrefix(p, dir) {
			t.Errorf("file %s outside %s", p, dir)
		}
	}
	caPEM, err := os.ReadFile(files.CA)
	must(t, err)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	must(t, err)
	u, _ := url.Parse(s.URL())
	c, err := client.NewClient(client.BaseURL(u), client.Log(nil), client.HTTPClient(&http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
	}}))
	must(t, err)
	nodes, err := c.Nodes.GetAll(tctx(t))
	must(t, err)
	if len(nodes) != 1 || nodes[0].Name != "a" {
		t.Errorf("nodes = %+v", nodes)
	}
	if string(caPEM) != string(s.CACertPEM()) {
		t.Error("ca.crt differs from CACertPEM")
	}
}

func TestTLSHelpersNeedTLSAndListenIsLoopbackOnly(t *testing.T) {
	s := New(Options{})
	if _, err := s.WriteClientFiles(t.TempDir()); err == nil {
		t.Error("WriteClientFiles without TLS succeeded")
	}
	if s.CACertPEM() != nil {
		t.Error("CA without TLS")
	}
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", "192.0.2.1:0", "example.com:0"} {
		if err := New(Options{Listen: addr}).Start(); err == nil {
			t.Errorf("listening on %s allowed", addr)
		}
	}
	v6 := New(Options{Listen: "[::1]:0"})
	if err := v6.Start(); err == nil {
		defer v6.Close()
		if !strings.HasPrefix(v6.URL(), "http://[::1]:") {
			t.Errorf("v6 url = %s", v6.URL())
		}
	}
}

func TestRestartKeepsAddressCAAndState(t *testing.T) {
	s, c := startSim(t, Options{RequireClientCert: true})
	must(t, s.AddNode("a", nil))
	url, ca := s.URL(), string(s.CACertPEM())
	must(t, s.Close())
	if _, err := c.Nodes.GetAll(tctx(t)); err == nil {
		t.Fatal("a stopped controller answered")
	}
	must(t, s.Start())
	if s.URL() != url || string(s.CACertPEM()) != ca {
		t.Errorf("restart changed url %s -> %s or the CA", url, s.URL())
	}
	nodes, err := c.Nodes.GetAll(tctx(t))
	must(t, err)
	if len(nodes) != 1 {
		t.Errorf("after restart %d nodes", len(nodes))
	}
	if err := s.Start(); err == nil {
		t.Error("second Start while running succeeded")
	}
}

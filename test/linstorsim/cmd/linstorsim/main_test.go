package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startRun runs the command in the background and returns the first
// stdout line and a stop function that returns run's error.
func startRun(t *testing.T, args ...string) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	var stderr strings.Builder
	go func() {
		err := run(ctx, args, pw, &stderr)
		_ = pw.CloseWithError(io.EOF)
		done <- err
	}()
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(pr).ReadString('\n')
		lines <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, pr)
	}()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("run did not return after cancel")
			return nil
		}
	}
	select {
	case line := <-lines:
		return line, stop
	case err := <-done:
		cancel()
		t.Fatalf("run returned early: %v (stderr %q)", err, stderr.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("no URL printed")
	}
	return "", stop
}

func getJSON(t *testing.T, hc *http.Client, url string, out any) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

func TestRunPrintsURLFirstAndServesTheScenario(t *testing.T) {
	dir := t.TempDir()
	scenario := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(scenario, []byte("nodes: [{name: a, storagePools: [{name: thin}]}]\nvolumes: [{name: pvc-1, diskful: [a]}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url, stop := startRun(t, "--listen", "127.0.0.1:0", "--print-url", "--scenario", scenario, "--property-namespace", "Aux")
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("first line %q is not the URL", url)
	}
	var nodes []struct {
		Name  string            `json:"name"`
		Props map[string]string `json:"props"`
	}
	getJSON(t, http.DefaultClient, url+"/v1/nodes", &nodes)
	if len(nodes) != 1 || nodes[0].Props["Aux/linbit.com/hostname"] != "a" {
		t.Errorf("nodes = %+v", nodes)
	}
	var info map[string]any
	getJSON(t, http.DefaultClient, url+"/_sim/info", &info)
	if info["volumes"] != float64(1) || info["propertyNamespace"] != "Aux" {
		t.Errorf("info = %v", info)
	}
	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
}

func TestRunRealisticSetsTheModeAndDeleteWindow(t *testing.T) {
	url, stop := startRun(t, "--print-url", "--realistic", "--delete-window", "3s")
	defer func() { _ = stop() }()
	var info map[string]any
	getJSON(t, http.DefaultClient, url+"/_sim/info", &info)
	if info["realistic"] != true || info["deleteWindow"] != "3s" {
		t.Errorf("info = %v", info)
	}
}

func TestRunWithRequiredClientCertsWritesClientFiles(t *testing.T) {
	dir := t.TempDir()
	url, stop := startRun(t, "--print-url", "--require-client-cert", "--client-cert-dir", dir)
	defer func() { _ = stop() }()
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("url = %q", url)
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}}
	var v map[string]any
	getJSON(t, withCert, url+"/v1/controller/version", &v)
	if v["version"] == "" {
		t.Errorf("version = %v", v)
	}
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	if resp, err := noCert.Get(url + "/v1/nodes"); err == nil {
		resp.Body.Close()
		t.Error("client without certificate was served")
	}
}

func TestRunRefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"--listen", "0.0.0.0:0"},
		{"--scenario", "/does/not/exist.yaml"},
		{"--no-such-flag"},
		{"stray"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("run %v succeeded", args)
		}
	}
}

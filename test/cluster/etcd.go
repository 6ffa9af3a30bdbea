package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"
)

// startEtcd runs a single-member etcd on two free loopback ports and waits
// until it reports healthy. It retries with new ports when one was taken
// between reservation and bind.
func (c *Cluster) startEtcd(ctx context.Context) error {
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return err
		}
		clientURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
		logLevel := "warn"
		if c.opts.Verbose > 0 {
			logLevel = "info"
		}
		p, err := c.StartProcess(ctx, ProcessSpec{
			Name: "etcd",
			Path: "etcd",
			Args: []string{
				"--name=e2e",
				"--data-dir=" + filepath.Join(c.dir, fmt.Sprintf("etcd-%d", attempt)),
				"--listen-client-urls=" + clientURL,
				"--advertise-client-urls=" + clientURL,
				"--listen-peer-urls=" + peerURL,
				"--initial-advertise-peer-urls=" + peerURL,
				"--initial-cluster=e2e=" + peerURL,
				// Throwaway data: durability costs time and buys nothing here.
				"--unsafe-no-fsync=true",
				"--log-level=" + logLevel,
			},
		})
		if err != nil {
			return err
		}
		err = waitFor(ctx, p, "etcd health", func(ctx context.Context) error {
			return etcdHealthy(ctx, clientURL)
		})
		if err == nil {
			c.etcdURL = clientURL
			return nil
		}
		lastErr = err
		_ = p.Kill() // a failed attempt leaves nothing behind
		if !portConflict(p) {
			break
		}
	}
	return fmt.Errorf("etcd: %w", lastErr)
}

// loopbackHTTP never consults proxy settings: all traffic stays on 127.0.0.1.
var loopbackHTTP = &http.Client{
	Transport: &http.Transport{Proxy: nil},
	Timeout:   2 * time.Second,
}

func etcdHealthy(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := loopbackHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close() //nolint:errcheck // read-only
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
		return fmt.Errorf("etcd %s/health: %d %s", url, resp.StatusCode, body)
	}
	return nil
}

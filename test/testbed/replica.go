package testbed

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
)

// SidecarReplica is one more sidecar next to Bed.Sidecar, as the second
// replica of the CSI controller Deployment runs one: the same flags and
// service account (so, with leader election, the same Lease), but its own
// pod name (its leader identity), HTTP endpoint and log file.
type SidecarReplica struct {
	Process *cluster.Process
	// PodName is the POD_NAME it runs with; its Lease identity starts with
	// PodName.
	PodName string
	addr    string
}

// URL is the base URL of the replica's health and metrics endpoint.
func (r *SidecarReplica) URL() string { return "http://" + r.addr }

// Metrics scrapes the replica's metrics endpoint.
func (r *SidecarReplica) Metrics(ctx context.Context) (Metrics, error) {
	return ScrapeMetrics(ctx, r.URL()+"/metrics")
}

// StartSidecarReplica starts another sidecar as CSI controller pod podName
// would run it and waits until it answers /readyz; it need not lead (with
// leader election on, it stands by while Bed.Sidecar leads).
func (b *Bed) StartSidecarReplica(ctx context.Context, podName string) (*SidecarReplica, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	spec, err := b.sidecarSpec(SidecarBinaryName+"-"+podName, podName, addr)
	if err != nil {
		return nil, err
	}
	p, err := b.Cluster.StartProcess(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("sidecar replica %s: %w", podName, err)
	}
	r := &SidecarReplica{Process: p, PodName: podName, addr: addr}
	if err := r.WaitReady(ctx); err != nil {
		return nil, err
	}
	b.opts.Logf("sidecar replica %s ready (metrics on %s/metrics)", podName, r.URL())
	return r, nil
}

// WaitReady waits until the replica answers /readyz with 200; it fails at
// once when the process exits.
func (r *SidecarReplica) WaitReady(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	err := Poll(ctx, "sidecar replica "+r.PodName+" ready", func(ctx context.Context) (bool, string) {
		if r.Process.Exited() {
			return true, ""
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL()+"/readyz", nil)
		if err != nil {
			return false, err.Error()
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, err.Error()
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, "/readyz: " + resp.Status
	})
	if r.Process.Exited() {
		return fmt.Errorf("sidecar replica %s exited (%v); log %s ends with:\n%s", r.PodName, r.Process.ExitErr(), r.Process.LogPath(), r.Process.LogTail(3000))
	}
	return err
}

package linstorsim

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/LINBIT/golinstor/client"
)

// startSim starts a simulator for one test and returns it with a golinstor
// v0.64.1 client, the client the sidecar uses.
func startSim(t *testing.T, opts Options) (*Sim, *client.Client) {
	t.Helper()
	s := New(opts)
	if err := s.Start(); err != nil {
		t.Fatalf("start simulator: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	c, err := s.NewClient()
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return s, c
}

func tctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// threeNodes adds nodes a, b, c with a 100 GiB thin pool, zones z1, z1, z2.
func threeNodes(t *testing.T, s *Sim) {
	t.Helper()
	for _, n := range []struct{ name, zone string }{{"a", "z1"}, {"b", "z1"}, {"c", "z2"}} {
		must(t, s.AddNode(n.name, map[string]string{"Aux/topology/topology.kubernetes.io/zone": n.zone},
			StoragePool{Name: "thin", Provider: client.LVM_THIN, TotalKiB: 100 << 20}))
	}
}

// rawGet fetches a path from the simulator and returns status and body.
func rawGet(t *testing.T, s *Sim, path string) (int, string) {
	t.Helper()
	return rawDo(t, s, http.MethodGet, path, "")
}

func rawDo(t *testing.T, s *Sim, method, path, body string) (int, string) {
	t.Helper()
	hc, err := s.HTTPClient()
	must(t, err)
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(tctx(t), method, s.URL()+path, rd)
	must(t, err)
	resp, err := hc.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	return resp.StatusCode, string(b)
}

func names[T any](items []T, name func(T) string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = name(it)
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

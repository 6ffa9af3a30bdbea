package sidecar

import (
	"context"
	"fmt"
	"net/url"
	"runtime"
	"testing"

	lapi "github.com/LINBIT/golinstor/client"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
)

// benchSim is the LINSTOR simulator with n volumes of 3 replicas on 100
// nodes, and a bulk Linstor reading it.
func benchSim(b *testing.B, n int) (*linstorsim.Sim, *Linstor) {
	b.Helper()
	sim := linstorsim.New(linstorsim.Options{})
	if err := sim.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sim.Close() })
	if err := sim.Generate(linstorsim.GenerateSpec{Nodes: 100, Zones: 5, Volumes: n, Replicas: 3}); err != nil {
		b.Fatal(err)
	}
	u, err := url.Parse(sim.URL())
	if err != nil {
		b.Fatal(err)
	}
	lc, bt, err := NewLinstorClient(lapi.BaseURL(u), lapi.Log(quietLog{}))
	if err != nil {
		b.Fatal(err)
	}
	return sim, NewBulkLinstor(lc, bt, NamespaceTopology, 0)
}

// BenchmarkFetchUnchanged10k is the steady-state LINSTOR read at 10,000
// volumes: three requests, hashed, nothing decoded. It also reports what the
// last decoded view keeps alive.
func BenchmarkFetchUnchanged10k(b *testing.B) {
	_, l := benchSim(b, 10000)
	ctx := context.Background()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := l.Fetch(ctx); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	retained := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
	b.ResetTimer()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		v, err := l.Fetch(ctx)
		if err != nil || !v.Unchanged {
			b.Fatalf("fetch: %v, unchanged %v", err, v != nil && v.Unchanged)
		}
	}
	// The simulator runs in this process: allocations per op include its
	// encoding of the answers; retained-MiB is the sidecar's own view.
	b.ReportMetric(retained, "retained-MiB")
}

// BenchmarkFetchChanged10k is a cycle after one replica moved: the resource
// view is read again and decoded.
func BenchmarkFetchChanged10k(b *testing.B) {
	sim, l := benchSim(b, 10000)
	ctx := context.Background()
	if _, err := l.Fetch(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		// Volume i lives on nodes i..i+2 (mod 100); move one replica back and forth.
		rd := fmt.Sprintf("pvc-%08d", i%10000)
		from, to := fmt.Sprintf("node-%03d", i%100), fmt.Sprintf("node-%03d", (i+50)%100)
		if err := sim.MoveReplica(rd, from, to); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		v, err := l.Fetch(ctx)
		if err != nil || v.Unchanged {
			b.Fatalf("fetch: %v, unchanged %v", err, v != nil && v.Unchanged)
		}
	}
}

// BenchmarkFetchGolinstor10k is the same read decoded by golinstor into its
// full types, as Fetch did before BulkTransport: the cost every cycle paid.
func BenchmarkFetchGolinstor10k(b *testing.B) {
	sim, _ := benchSim(b, 10000)
	u, err := url.Parse(sim.URL())
	if err != nil {
		b.Fatal(err)
	}
	lc, err := lapi.NewClient(lapi.BaseURL(u), lapi.Log(quietLog{}))
	if err != nil {
		b.Fatal(err)
	}
	l := NewLinstor(lc, NamespaceTopology)
	ctx := context.Background()
	b.ResetTimer()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := l.Fetch(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

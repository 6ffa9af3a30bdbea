package linstor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"testing"

	lapi "github.com/LINBIT/golinstor/client"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/podconfig"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
)

// benchSim is the LINSTOR simulator with n volumes of 3 replicas on 100
// nodes, and a bulk Linstor reading it.
func benchSim(b *testing.B, n int, opts linstorsim.Options) (*linstorsim.Sim, *Linstor) {
	b.Helper()
	sim := linstorsim.New(opts)
	if err := sim.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sim.Close() })
	if err := sim.Generate(linstorsim.GenerateSpec{Nodes: 100, Zones: 5, Volumes: n, Replicas: 3}); err != nil {
		b.Fatal(err)
	}
	lc, bt, err := NewLinstorClient(podconfig.Linstor{Controllers: sim.URL()}, lapi.Log(fixture.QuietLog{}))
	if err != nil {
		b.Fatal(err)
	}
	return sim, NewBulkLinstor(lc, bt, NamespaceTopology, 0)
}

// benchFetchSteady fetches over and over with nothing a decision reads
// changing, and reports what the last view keeps alive.
func benchFetchSteady(b *testing.B, n int, opts linstorsim.Options) {
	_, l := benchSim(b, n, opts)
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
	b.ReportMetric(retained, "retained-MiB")
}

// BenchmarkBulkFetchUnchanged10k is the steady-state LINSTOR read at 10,000
// volumes from a LINSTOR that repeats its answers byte for byte: three
// requests, each decoded lean as it streams in, the last view kept.
func BenchmarkBulkFetchUnchanged10k(b *testing.B) { benchFetchSteady(b, 10000, linstorsim.Options{}) }

// BenchmarkBulkFetchRealistic10k is the same against a LINSTOR that answers
// like a real one (linstorsim's realistic mode): allocated sizes, DRBD
// states and report times differ in every request, the placement does not.
func BenchmarkBulkFetchRealistic10k(b *testing.B) {
	benchFetchSteady(b, 10000, linstorsim.Options{Realistic: true})
}

// BenchmarkBulkFetchRealistic50k is BenchmarkBulkFetchRealistic10k at
// 50,000 volumes (150,000 resources).
func BenchmarkBulkFetchRealistic50k(b *testing.B) {
	benchFetchSteady(b, 50000, linstorsim.Options{Realistic: true})
}

// BenchmarkBulkFetchChanged10k is a cycle after one replica moved: the same
// three requests, and a new view built.
func BenchmarkBulkFetchChanged10k(b *testing.B) {
	sim, l := benchSim(b, 10000, linstorsim.Options{})
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

// BenchmarkBulkFetchGolinstor10k is the same read decoded by golinstor into
// its full types, as Fetch did before BulkTransport.
func BenchmarkBulkFetchGolinstor10k(b *testing.B) {
	sim, _ := benchSim(b, 10000, linstorsim.Options{})
	u, err := url.Parse(sim.URL())
	if err != nil {
		b.Fatal(err)
	}
	lc, err := lapi.NewClient(lapi.BaseURL(u), lapi.Log(fixture.QuietLog{}))
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

// BenchmarkBulkDecodeRealisticView10k is the sidecar's decoding of one
// realistic resource view of 10,000 volumes (recorded from the simulator),
// without HTTP or the simulator.
func BenchmarkBulkDecodeRealisticView10k(b *testing.B) {
	sim, _ := benchSim(b, 10000, linstorsim.Options{Realistic: true})
	resp, err := http.Get(sim.URL() + "/v1/view/resources")
	if err != nil {
		b.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		b.Fatal(err)
	}
	_ = sim.Close()
	seed := NewBulkLinstor(nil, nil, "", 0).seed
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := decodeResources(bytes.NewReader(body), newDigest(seed)); err != nil {
			b.Fatal(err)
		}
	}
}

package main

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
)

func TestSummarizeNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Second)
	}
	got := summarize(ds)
	if got.Count != 100 || got.Median != 50 || got.P99 != 99 || got.Max != 100 {
		t.Fatalf("summarize 1..100 s = %+v, want median 50, p99 99, max 100", got)
	}
	if one := summarize([]time.Duration{3 * time.Second}); one.Median != 3 || one.P99 != 3 || one.Max != 3 {
		t.Fatalf("summarize one value = %+v", one)
	}
	if empty := summarize(nil); empty.Count != 0 {
		t.Fatalf("summarize nothing = %+v", empty)
	}
}

// The bench's own idea of the right affinity, written apart from the
// sidecar's code so the bench checks the sidecar rather than itself.
func TestExpectedAffinity(t *testing.T) {
	nodes := []string{"node-007", "node-002", "node-012"} // zones 2, 2, 2
	if a := expectedAffinity(anywhere, nodes); a != nil {
		t.Fatalf("anywhere: %v, want no affinity", a)
	}
	if got, want := affinityKey(expectedAffinity(strict, nodes)), "linbit.com/hostname In node-002|linbit.com/hostname In node-007|linbit.com/hostname In node-012"; got != want {
		t.Fatalf("strict: %q, want %q", got, want)
	}
	if got, want := affinityKey(expectedAffinity(zonal, nodes)), "topology.kubernetes.io/zone In zone-2"; got != want {
		t.Fatalf("zone: %q, want %q", got, want)
	}
	// Order of terms and of expressions does not matter; content does.
	a := &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{
		{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "b", Operator: corev1.NodeSelectorOpIn, Values: []string{"1"}}, {Key: "a", Operator: corev1.NodeSelectorOpIn, Values: []string{"2"}}}},
	}}}
	if got := affinityKey(a); got != "a In 2&b In 1" {
		t.Fatalf("affinityKey = %q", got)
	}
	if affinityKey(nil) != "" || affinityKey(&corev1.VolumeNodeAffinity{}) != "" {
		t.Fatal("empty affinities differ")
	}
}

// The p99 of the API server's latency comes from bucket deltas,
// interpolated as Prometheus' histogram_quantile does.
func TestHistogramQuantileOfDeltas(t *testing.T) {
	inf := math.Inf(1)
	before := histogram{Count: 10, Sum: 0.1, Buckets: []bucket{{0.005, 10}, {0.025, 10}, {0.1, 10}, {inf, 10}}}
	after := histogram{Count: 110, Sum: 2.1, Buckets: []bucket{{0.005, 10}, {0.025, 60}, {0.1, 110}, {inf, 110}}}
	d := after.minus(before)
	if d.Count != 100 || math.Abs(d.Sum-2) > 1e-9 {
		t.Fatalf("delta = %+v", d)
	}
	// 50 in (0, 25 ms] after the empty first bucket, 50 in (25, 100 ms].
	if got := d.quantile(0.5); math.Abs(got-0.025) > 1e-9 {
		t.Errorf("median = %v, want 0.025", got)
	}
	if got, want := d.quantile(0.99), 0.025+0.075*49/50; math.Abs(got-want) > 1e-9 {
		t.Errorf("p99 = %v, want %v", got, want)
	}
	// Beyond the last finite bound: that bound, as histogram_quantile says.
	over := histogram{Count: 2, Buckets: []bucket{{1, 1}, {inf, 2}}}
	if got := over.quantile(0.99); got != 1 {
		t.Errorf("p99 in +Inf bucket = %v, want 1", got)
	}
	if got := (histogram{}).quantile(0.99); !math.IsNaN(got) {
		t.Errorf("p99 of nothing = %v, want NaN", got)
	}
	s := d.summary()
	if s.Count != 100 || math.Abs(s.Mean-0.02) > 1e-9 {
		t.Errorf("summary = %+v", s)
	}
}

// Histograms of several series add up per group; labels filter them.
func TestHistogramsOfGroupsAndFilters(t *testing.T) {
	text := `# TYPE d histogram
d_bucket{verb="GET",resource="persistentvolumes",scope="resource",le="0.1"} 3
d_bucket{verb="GET",resource="persistentvolumes",scope="resource",le="+Inf"} 4
d_sum{verb="GET",resource="persistentvolumes",scope="resource"} 1
d_count{verb="GET",resource="persistentvolumes",scope="resource"} 4
d_bucket{verb="GET",resource="persistentvolumes",scope="cluster",le="0.1"} 1
d_bucket{verb="GET",resource="persistentvolumes",scope="cluster",le="+Inf"} 1
d_sum{verb="GET",resource="persistentvolumes",scope="cluster"} 0.05
d_count{verb="GET",resource="persistentvolumes",scope="cluster"} 1
d_bucket{verb="PUT",resource="persistentvolumes",scope="resource",le="0.1"} 2
d_bucket{verb="PUT",resource="persistentvolumes",scope="resource",le="+Inf"} 2
d_sum{verb="PUT",resource="persistentvolumes",scope="resource"} 0.1
d_count{verb="PUT",resource="persistentvolumes",scope="resource"} 2
d_bucket{verb="GET",resource="pods",scope="resource",le="0.1"} 9
d_bucket{verb="GET",resource="pods",scope="resource",le="+Inf"} 9
d_sum{verb="GET",resource="pods",scope="resource"} 0.2
d_count{verb="GET",resource="pods",scope="resource"} 9
`
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	got := histogramsOf(fams, "d", map[string]string{"resource": "persistentvolumes"}, "verb")
	if len(got) != 2 || got["GET"].Count != 5 || got["PUT"].Count != 2 {
		t.Fatalf("groups = %+v", got)
	}
	if b := got["GET"].Buckets; len(b) != 2 || b[0].Count != 4 || b[1].Count != 5 {
		t.Errorf("GET buckets = %+v, want 4 at 0.1 and 5 at +Inf", b)
	}
	if n := sum(fams, "d_count", map[string]string{"resource": "!persistentvolumes"}); n != 9 {
		t.Errorf("sum of the other resources = %v, want 9", n)
	}
}

// Traffic is the difference of two snapshots, per route and in all, with
// routes that saw nothing left out.
func TestTrafficSince(t *testing.T) {
	t0 := time.Now()
	c0 := simCounts{at: t0, reqs: map[string]int64{"GET /v1/nodes": 2, "GET /v1/view/resources": 2}, bytes: map[string]int64{"GET /v1/nodes": 100, "GET /v1/view/resources": 5000}}
	c1 := simCounts{at: t0.Add(2 * time.Minute), reqs: map[string]int64{"GET /v1/nodes": 4, "GET /v1/view/resources": 2, "GET /v1/resource-definitions": 1}, bytes: map[string]int64{"GET /v1/nodes": 300, "GET /v1/view/resources": 5000, "GET /v1/resource-definitions": 700}}
	tr := c1.since(c0)
	if tr.Requests != 3 || tr.Bytes != 900 || len(tr.Routes) != 2 {
		t.Fatalf("traffic = %+v", tr)
	}
	if tr.requestsPerMinute() != 1.5 || tr.bytesPerMinute() != 450 {
		t.Errorf("per minute: %v requests, %v bytes", tr.requestsPerMinute(), tr.bytesPerMinute())
	}
}

// The bench reads the sidecar's default period from its -h output.
func TestDurationDefaultFromUsage(t *testing.T) {
	usage := `Usage of x:
  -reconcile-rate duration
    	How often LINSTOR is read in full. (default 2m0s)
  -repair-blocked-pods
    	Watch pods. (default true)
  -resync-rate duration
    	How often the informers resync their caches. (default 5m0s)
  -timeout duration
    	Timeout of every call.
`
	if d, err := durationDefault(usage, "reconcile-rate"); err != nil || d != 2*time.Minute {
		t.Errorf("reconcile-rate: %v, %v", d, err)
	}
	if d, err := durationDefault(usage, "resync-rate"); err != nil || d != 5*time.Minute {
		t.Errorf("resync-rate: %v, %v", d, err)
	}
	if _, err := durationDefault(usage, "timeout"); err == nil {
		t.Error("timeout has no default, but one was found")
	}
	if _, err := durationDefault(usage, "rate"); err == nil {
		t.Error("no flag -rate, but a default was found")
	}
}

package main

import (
	"testing"
	"time"

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

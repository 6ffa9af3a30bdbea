package decide_test

import (
	"reflect"
	"testing"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	corev1 "k8s.io/api/core/v1"
)

func TestAffinityMatches(t *testing.T) {
	anywhere := decide.Topology{Anywhere: true}
	segs := func(s ...decide.Segment) decide.Topology { return decide.Topology{Segments: s} }
	zoneHost := fixture.Term(fixture.ZoneKey+"=a", decide.HostnameKey+"=n1")
	withOp := func(op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorTerm {
		return corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			{Key: decide.HostnameKey, Operator: op, Values: values},
		}}
	}
	cases := []struct {
		name     string
		affinity *corev1.VolumeNodeAffinity
		topo     decide.Topology
		want     bool
	}{
		{"nil affinity matches anywhere", nil, anywhere, true},
		{"affinity without required part matches anywhere", &corev1.VolumeNodeAffinity{}, anywhere, true},
		{"nil affinity does not match segments", nil, segs(fixture.Host("n1")), false},
		{"any term does not match anywhere", fixture.Affinity(fixture.Term(decide.HostnameKey + "=n1")), anywhere, false},
		{"equal single term", fixture.Affinity(fixture.Term(decide.HostnameKey + "=n1")), segs(fixture.Host("n1")), true},
		{"terms in another order than segments",
			fixture.Affinity(fixture.Term(decide.HostnameKey+"=n2"), fixture.Term(decide.HostnameKey+"=n1")), segs(fixture.Host("n1"), fixture.Host("n2")), true},
		{"key order inside a term is irrelevant",
			fixture.Affinity(fixture.Term(decide.HostnameKey+"=n1", fixture.ZoneKey+"=a")), segs(fixture.Seg(fixture.ZoneKey+"=a", decide.HostnameKey+"=n1")), true},
		{"sorted keys match too", fixture.Affinity(zoneHost), segs(fixture.Seg(fixture.ZoneKey+"=a", decide.HostnameKey+"=n1")), true},
		{"duplicate segments match one term",
			fixture.Affinity(fixture.Term(fixture.ZoneKey + "=a")), segs(fixture.Zone("a"), fixture.Zone("a")), true},
		{"duplicate terms match one segment",
			fixture.Affinity(fixture.Term(fixture.ZoneKey+"=a"), fixture.Term(fixture.ZoneKey+"=a")), segs(fixture.Zone("a")), true},
		{"duplicates on both sides", fixture.Affinity(fixture.Term(fixture.ZoneKey+"=a"), fixture.Term(fixture.ZoneKey+"=b"), fixture.Term(fixture.ZoneKey+"=a")),
			segs(fixture.Zone("b"), fixture.Zone("a"), fixture.Zone("b")), true},
		{"extra term", fixture.Affinity(fixture.Term(decide.HostnameKey+"=n1"), fixture.Term(decide.HostnameKey+"=n2")), segs(fixture.Host("n1")), false},
		{"missing term", fixture.Affinity(fixture.Term(decide.HostnameKey + "=n1")), segs(fixture.Host("n1"), fixture.Host("n2")), false},
		{"different value", fixture.Affinity(fixture.Term(decide.HostnameKey + "=n2")), segs(fixture.Host("n1")), false},
		{"term with an extra key", fixture.Affinity(zoneHost), segs(fixture.Host("n1")), false},
		{"term missing a key", fixture.Affinity(fixture.Term(decide.HostnameKey + "=n1")), segs(fixture.Seg(fixture.ZoneKey+"=a", decide.HostnameKey+"=n1")), false},
		{"matchFields term never equal",
			fixture.Affinity(corev1.NodeSelectorTerm{
				MatchExpressions: fixture.Term(decide.HostnameKey + "=n1").MatchExpressions,
				MatchFields:      []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}},
			}), segs(fixture.Host("n1")), false},
		{"matchFields-only term never equal",
			fixture.Affinity(corev1.NodeSelectorTerm{
				MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}},
			}), segs(fixture.Host("n1")), false},
		{"NotIn never equal", fixture.Affinity(withOp(corev1.NodeSelectorOpNotIn, "n1")), segs(fixture.Host("n1")), false},
		{"Exists never equal", fixture.Affinity(withOp(corev1.NodeSelectorOpExists)), segs(fixture.Host("n1")), false},
		{"several values never equal", fixture.Affinity(withOp(corev1.NodeSelectorOpIn, "n1", "n2")), segs(fixture.Host("n1")), false},
		{"repeated value never equal", fixture.Affinity(withOp(corev1.NodeSelectorOpIn, "n1", "n1")), segs(fixture.Host("n1")), false},
		{"no values never equal", fixture.Affinity(withOp(corev1.NodeSelectorOpIn)), segs(fixture.Host("n1")), false},
		{"one bad term spoils an otherwise equal affinity",
			fixture.Affinity(fixture.Term(decide.HostnameKey+"=n1"), withOp(corev1.NodeSelectorOpNotIn, "n1")), segs(fixture.Host("n1")), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := decide.AffinityMatches(tc.affinity, tc.topo); got != tc.want {
				t.Errorf("AffinityMatches(%s, %v) = %v, want %v",
					decide.DescribeAffinity(tc.affinity), fixture.SegSet(tc.topo.Segments), got, tc.want)
			}
		})
	}
}

func TestAffinityFor(t *testing.T) {
	cases := []struct {
		name string
		topo decide.Topology
		want *corev1.VolumeNodeAffinity
	}{
		{"anywhere renders no affinity", decide.Topology{Anywhere: true}, nil},
		{"one term per segment in segment order",
			decide.Topology{Segments: []decide.Segment{fixture.Host("n2"), fixture.Host("n1")}},
			fixture.Affinity(fixture.Term(decide.HostnameKey+"=n2"), fixture.Term(decide.HostnameKey+"=n1"))},
		{"expressions sorted by key",
			decide.Topology{Segments: []decide.Segment{fixture.Seg(fixture.ZoneKey+"=a", decide.HostnameKey+"=n1", fixture.Region+"=r1", "example.com/rack=7")}},
			fixture.Affinity(fixture.Term("example.com/rack=7", decide.HostnameKey+"=n1", fixture.Region+"=r1", fixture.ZoneKey+"=a"))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := decide.AffinityFor(tc.topo)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("AffinityFor = %s, want %s", decide.DescribeAffinity(got), decide.DescribeAffinity(tc.want))
			}
		})
	}
}

func TestAffinityForRoundTripsThroughAffinityMatches(t *testing.T) {
	topos := map[string]decide.Topology{
		"anywhere":          {Anywhere: true},
		"hostnames":         {Segments: []decide.Segment{fixture.Host("n1"), fixture.Host("n2"), fixture.Host("n3")}},
		"zones with repeat": {Segments: []decide.Segment{fixture.Zone("a"), fixture.Zone("b"), fixture.Zone("a")}},
		"multi-key":         {Segments: []decide.Segment{fixture.Seg(fixture.ZoneKey+"=a", fixture.Region+"=r1"), fixture.Seg(fixture.Region + "=r2")}},
	}
	for name, topo := range topos {
		t.Run(name, func(t *testing.T) {
			a := decide.AffinityFor(topo)
			if !decide.AffinityMatches(a, topo) {
				t.Errorf("AffinityMatches(AffinityFor(t), t) = false for %s", decide.DescribeAffinity(a))
			}
			back, ok := fixture.AffinitySegments(a)
			if !ok || !fixture.SameSegmentSet(back, topo.Segments) {
				t.Errorf("AffinityFor rendered %s, want the segments %v", decide.DescribeAffinity(a), fixture.SegSet(topo.Segments))
			}
		})
	}
}

func TestDescribeAffinity(t *testing.T) {
	cases := []struct {
		name     string
		affinity *corev1.VolumeNodeAffinity
		want     string
	}{
		{"nil is anywhere", nil, "anywhere"},
		{"one term", fixture.Affinity(fixture.Term("a=1", "b=2")), "[{a=1,b=2}]"},
		{"two terms", fixture.Affinity(fixture.Term("a=1"), fixture.Term("a=2")), "[{a=1} {a=2}]"},
		{"other operator with values", fixture.Affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			{Key: "a", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"1", "2"}}}}), "[{a NotIn (1,2)}]"},
		{"match fields flagged", fixture.Affinity(corev1.NodeSelectorTerm{
			MatchExpressions: fixture.Term("a=1").MatchExpressions,
			MatchFields:      []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}}}),
			"[{a=1,fields...}]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := decide.DescribeAffinity(tc.affinity); got != tc.want {
				t.Errorf("DescribeAffinity = %q, want %q", got, tc.want)
			}
		})
	}
}

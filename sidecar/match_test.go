package sidecar

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestAffinityMatches(t *testing.T) {
	anywhere := Topology{Anywhere: true}
	segs := func(s ...Segment) Topology { return Topology{Segments: s} }
	zoneHost := term(fxZoneKey+"=a", HostnameKey+"=n1")
	withOp := func(op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorTerm {
		return corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			{Key: HostnameKey, Operator: op, Values: values},
		}}
	}
	cases := []struct {
		name     string
		affinity *corev1.VolumeNodeAffinity
		topo     Topology
		want     bool
	}{
		{"nil affinity matches anywhere", nil, anywhere, true},
		{"affinity without required part matches anywhere", &corev1.VolumeNodeAffinity{}, anywhere, true},
		{"nil affinity does not match segments", nil, segs(host("n1")), false},
		{"any term does not match anywhere", affinity(term(HostnameKey + "=n1")), anywhere, false},
		{"equal single term", affinity(term(HostnameKey + "=n1")), segs(host("n1")), true},
		{"terms in another order than segments",
			affinity(term(HostnameKey+"=n2"), term(HostnameKey+"=n1")), segs(host("n1"), host("n2")), true},
		{"key order inside a term is irrelevant",
			affinity(term(HostnameKey+"=n1", fxZoneKey+"=a")), segs(seg(fxZoneKey+"=a", HostnameKey+"=n1")), true},
		{"sorted keys match too", affinity(zoneHost), segs(seg(fxZoneKey+"=a", HostnameKey+"=n1")), true},
		{"duplicate segments match one term",
			affinity(term(fxZoneKey + "=a")), segs(zone("a"), zone("a")), true},
		{"duplicate terms match one segment",
			affinity(term(fxZoneKey+"=a"), term(fxZoneKey+"=a")), segs(zone("a")), true},
		{"duplicates on both sides", affinity(term(fxZoneKey+"=a"), term(fxZoneKey+"=b"), term(fxZoneKey+"=a")),
			segs(zone("b"), zone("a"), zone("b")), true},
		{"extra term", affinity(term(HostnameKey+"=n1"), term(HostnameKey+"=n2")), segs(host("n1")), false},
		{"missing term", affinity(term(HostnameKey + "=n1")), segs(host("n1"), host("n2")), false},
		{"different value", affinity(term(HostnameKey + "=n2")), segs(host("n1")), false},
		{"term with an extra key", affinity(zoneHost), segs(host("n1")), false},
		{"term missing a key", affinity(term(HostnameKey + "=n1")), segs(seg(fxZoneKey+"=a", HostnameKey+"=n1")), false},
		{"matchFields term never equal",
			affinity(corev1.NodeSelectorTerm{
				MatchExpressions: term(HostnameKey + "=n1").MatchExpressions,
				MatchFields:      []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}},
			}), segs(host("n1")), false},
		{"matchFields-only term never equal",
			affinity(corev1.NodeSelectorTerm{
				MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}},
			}), segs(host("n1")), false},
		{"NotIn never equal", affinity(withOp(corev1.NodeSelectorOpNotIn, "n1")), segs(host("n1")), false},
		{"Exists never equal", affinity(withOp(corev1.NodeSelectorOpExists)), segs(host("n1")), false},
		{"several values never equal", affinity(withOp(corev1.NodeSelectorOpIn, "n1", "n2")), segs(host("n1")), false},
		{"repeated value never equal", affinity(withOp(corev1.NodeSelectorOpIn, "n1", "n1")), segs(host("n1")), false},
		{"no values never equal", affinity(withOp(corev1.NodeSelectorOpIn)), segs(host("n1")), false},
		{"one bad term spoils an otherwise equal affinity",
			affinity(term(HostnameKey+"=n1"), withOp(corev1.NodeSelectorOpNotIn, "n1")), segs(host("n1")), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := AffinityMatches(tc.affinity, tc.topo); got != tc.want {
				t.Errorf("AffinityMatches(%s, %v) = %v, want %v",
					DescribeAffinity(tc.affinity), segSet(tc.topo.Segments), got, tc.want)
			}
		})
	}
}

func TestAffinityFor(t *testing.T) {
	cases := []struct {
		name string
		topo Topology
		want *corev1.VolumeNodeAffinity
	}{
		{"anywhere renders no affinity", Topology{Anywhere: true}, nil},
		{"one term per segment in segment order",
			Topology{Segments: []Segment{host("n2"), host("n1")}},
			affinity(term(HostnameKey+"=n2"), term(HostnameKey+"=n1"))},
		{"expressions sorted by key",
			Topology{Segments: []Segment{seg(fxZoneKey+"=a", HostnameKey+"=n1", fxRegion+"=r1", "example.com/rack=7")}},
			affinity(term("example.com/rack=7", HostnameKey+"=n1", fxRegion+"=r1", fxZoneKey+"=a"))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := AffinityFor(tc.topo)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("AffinityFor = %s, want %s", DescribeAffinity(got), DescribeAffinity(tc.want))
			}
		})
	}
}

func TestAffinityForRoundTripsThroughAffinityMatches(t *testing.T) {
	topos := map[string]Topology{
		"anywhere":          {Anywhere: true},
		"hostnames":         {Segments: []Segment{host("n1"), host("n2"), host("n3")}},
		"zones with repeat": {Segments: []Segment{zone("a"), zone("b"), zone("a")}},
		"multi-key":         {Segments: []Segment{seg(fxZoneKey+"=a", fxRegion+"=r1"), seg(fxRegion + "=r2")}},
	}
	for name, topo := range topos {
		t.Run(name, func(t *testing.T) {
			a := AffinityFor(topo)
			if !AffinityMatches(a, topo) {
				t.Errorf("AffinityMatches(AffinityFor(t), t) = false for %s", DescribeAffinity(a))
			}
			back, ok := affinitySegments(a)
			if !ok || !sameSegmentSet(back, topo.Segments) {
				t.Errorf("AffinityFor rendered %s, want the segments %v", DescribeAffinity(a), segSet(topo.Segments))
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
		{"one term", affinity(term("a=1", "b=2")), "[{a=1,b=2}]"},
		{"two terms", affinity(term("a=1"), term("a=2")), "[{a=1} {a=2}]"},
		{"other operator with values", affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			{Key: "a", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"1", "2"}}}}), "[{a NotIn (1,2)}]"},
		{"match fields flagged", affinity(corev1.NodeSelectorTerm{
			MatchExpressions: term("a=1").MatchExpressions,
			MatchFields:      []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}}}),
			"[{a=1,fields...}]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := DescribeAffinity(tc.affinity); got != tc.want {
				t.Errorf("DescribeAffinity = %q, want %q", got, tc.want)
			}
		})
	}
}

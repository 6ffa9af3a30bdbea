package testbed

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Segment is one CSI topology segment: keys and values a node must all have.
type Segment map[string]string

// Hosts returns one segment per node: what a strict policy gives for
// replicas on those nodes.
func Hosts(nodes ...string) []Segment {
	out := make([]Segment, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, Segment{HostnameKey: n})
	}
	return out
}

// Zones returns one segment per zone: what the zone policy gives.
func Zones(zones ...string) []Segment {
	out := make([]Segment, 0, len(zones))
	for _, z := range zones {
		out = append(out, Segment{ZoneKey: z})
	}
	return out
}

// AffinityOf writes segments as the external-provisioner writes a CSI
// topology into a PV: one term per segment, one In expression of a single
// value per key. No segments means no affinity.
func AffinityOf(segments ...Segment) *corev1.VolumeNodeAffinity {
	if len(segments) == 0 {
		return nil
	}
	terms := make([]corev1.NodeSelectorTerm, 0, len(segments))
	for _, s := range segments {
		keys := make([]string, 0, len(s))
		for k := range s {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var exprs []corev1.NodeSelectorRequirement
		for _, k := range keys {
			exprs = append(exprs, corev1.NodeSelectorRequirement{Key: k, Operator: corev1.NodeSelectorOpIn, Values: []string{s[k]}})
		}
		terms = append(terms, corev1.NodeSelectorTerm{MatchExpressions: exprs})
	}
	return &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: terms}}
}

// segmentsOf reads an affinity back as segments; ok is false when a term is
// not of the provisioner's form (matchFields, other operators, several
// values, a key twice).
func segmentsOf(a *corev1.VolumeNodeAffinity) (segs []Segment, ok bool) {
	if a == nil || a.Required == nil {
		return nil, true
	}
	for _, term := range a.Required.NodeSelectorTerms {
		if len(term.MatchFields) > 0 {
			return nil, false
		}
		s := Segment{}
		for _, e := range term.MatchExpressions {
			if e.Operator != corev1.NodeSelectorOpIn || len(e.Values) != 1 {
				return nil, false
			}
			if _, dup := s[e.Key]; dup {
				return nil, false
			}
			s[e.Key] = e.Values[0]
		}
		segs = append(segs, s)
	}
	return segs, true
}

func segmentKey(s Segment) string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+s[k])
	}
	return strings.Join(parts, ",")
}

// AffinityEquals reports whether a PV affinity says exactly the segments,
// compared as sets (terms and expressions in any order); nil or an affinity
// without terms equals no segments.
func AffinityEquals(a *corev1.VolumeNodeAffinity, want []Segment) bool {
	got, ok := segmentsOf(a)
	if !ok {
		return false
	}
	set := func(segs []Segment) map[string]bool {
		m := map[string]bool{}
		for _, s := range segs {
			m[segmentKey(s)] = true
		}
		return m
	}
	g, w := set(got), set(want)
	if len(g) != len(w) {
		return false
	}
	for k := range w {
		if !g[k] {
			return false
		}
	}
	return true
}

// DescribeSegments renders segments for messages, e.g.
// {linbit.com/hostname=n1} | {linbit.com/hostname=n2}; "anywhere" for none.
func DescribeSegments(segs []Segment) string {
	if len(segs) == 0 {
		return "anywhere"
	}
	parts := make([]string, 0, len(segs))
	for _, s := range segs {
		parts = append(parts, "{"+segmentKey(s)+"}")
	}
	sort.Strings(parts)
	return strings.Join(parts, " | ")
}

// DescribeAffinity renders a PV affinity like DescribeSegments.
func DescribeAffinity(a *corev1.VolumeNodeAffinity) string {
	segs, ok := segmentsOf(a)
	if !ok {
		return fmt.Sprintf("%v (not of the provisioner's form)", a.Required.NodeSelectorTerms)
	}
	return DescribeSegments(segs)
}

// ShortAffinity renders an affinity for people: the values only, e.g.
// "n2,n3" or "zone-b"; "anywhere" for none.
func ShortAffinity(a *corev1.VolumeNodeAffinity) string {
	segs, ok := segmentsOf(a)
	if !ok {
		return DescribeAffinity(a)
	}
	if len(segs) == 0 {
		return "anywhere"
	}
	var parts []string
	for _, s := range segs {
		keys := make([]string, 0, len(s))
		for k := range s {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		vals := make([]string, 0, len(keys))
		for _, k := range keys {
			vals = append(vals, s[k])
		}
		parts = append(parts, strings.Join(vals, "/"))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

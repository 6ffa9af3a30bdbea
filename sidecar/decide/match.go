package decide

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// AffinityMatches reports whether a PV's node affinity says exactly what the
// topology says: every segment has an equal selector term and every term an
// equal segment (set semantics, duplicates allowed on both sides). A term with
// matchFields, an operator other than In, or several values is never equal to a
// segment. An absent affinity matches only the "anywhere" topology.
func AffinityMatches(affinity *corev1.VolumeNodeAffinity, t Topology) bool {
	terms := affinityTerms(affinity)
	if t.Anywhere || len(t.Segments) == 0 {
		return len(terms) == 0 && (t.Anywhere || len(t.Segments) == 0)
	}
	if len(terms) == 0 {
		return false
	}
	termSegs := make([]Segment, 0, len(terms))
	for i := range terms {
		seg, ok := termSegment(&terms[i])
		if !ok {
			return false
		}
		termSegs = append(termSegs, seg)
	}
	return coversAll(termSegs, t.Segments) && coversAll(t.Segments, termSegs)
}

func affinityTerms(affinity *corev1.VolumeNodeAffinity) []corev1.NodeSelectorTerm {
	if affinity == nil || affinity.Required == nil {
		return nil
	}
	return affinity.Required.NodeSelectorTerms
}

// termSegment reads a selector term as a segment, if it has the segment form:
// only matchExpressions, each "key In [one value]", no key twice.
func termSegment(term *corev1.NodeSelectorTerm) (Segment, bool) {
	if len(term.MatchFields) > 0 || len(term.MatchExpressions) == 0 {
		return nil, false
	}
	seg := make(Segment, len(term.MatchExpressions))
	for _, e := range term.MatchExpressions {
		if e.Operator != corev1.NodeSelectorOpIn || len(e.Values) != 1 {
			return nil, false
		}
		if _, dup := seg[e.Key]; dup {
			return nil, false
		}
		seg[e.Key] = e.Values[0]
	}
	return seg, true
}

// coversAll reports whether every segment of want has an equal one in have.
func coversAll(want, have []Segment) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if w.Equal(h) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// AffinityFor renders a topology as the CSI external-provisioner would: one
// selector term per segment, one "key In [value]" expression per key, keys
// sorted. The anywhere topology renders as no affinity at all.
func AffinityFor(t Topology) *corev1.VolumeNodeAffinity {
	if t.Anywhere || len(t.Segments) == 0 {
		return nil
	}
	terms := make([]corev1.NodeSelectorTerm, 0, len(t.Segments))
	for _, seg := range t.Segments {
		keys := make([]string, 0, len(seg))
		for k := range seg {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		exprs := make([]corev1.NodeSelectorRequirement, 0, len(keys))
		for _, k := range keys {
			exprs = append(exprs, corev1.NodeSelectorRequirement{Key: k, Operator: corev1.NodeSelectorOpIn, Values: []string{seg[k]}})
		}
		terms = append(terms, corev1.NodeSelectorTerm{MatchExpressions: exprs})
	}
	return &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: terms}}
}

// DescribeAffinity renders an affinity compactly for logs: "[{k=v,k2=v2} {...}]",
// or "anywhere" when absent.
func DescribeAffinity(affinity *corev1.VolumeNodeAffinity) string {
	terms := affinityTerms(affinity)
	if len(terms) == 0 {
		return "anywhere"
	}
	out := "["
	for i, term := range terms {
		if i > 0 {
			out += " "
		}
		out += "{"
		for j, e := range term.MatchExpressions {
			if j > 0 {
				out += ","
			}
			out += e.Key
			switch {
			case e.Operator == corev1.NodeSelectorOpIn && len(e.Values) == 1:
				out += "=" + e.Values[0]
			default:
				out += " " + string(e.Operator) + " " + joinValues(e.Values)
			}
		}
		if len(term.MatchFields) > 0 {
			out += ",fields..."
		}
		out += "}"
	}
	return out + "]"
}

func joinValues(v []string) string {
	s := "("
	for i, x := range v {
		if i > 0 {
			s += ","
		}
		s += x
	}
	return s + ")"
}

package decide_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	corev1 "k8s.io/api/core/v1"
)

// FuzzParseVolumeHandle: never panics; accepted handles round-trip through
// String; every accepted handle has the documented form.
func FuzzParseVolumeHandle(f *testing.F) {
	for _, s := range []string{"pvc-1", "pvc-1/0", "pvc-1/65535", "pvc-1/65536", "/1", "rd/", "rd/-1", "rd/1/2", "rd/+1", "rd/0x1", "rd/ 1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, handle string) {
		ref, err := decide.ParseVolumeHandle(handle)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(handle)) {
				t.Fatalf("error %q does not name the handle", err)
			}
			return
		}
		if ref.RD == "" || strings.Contains(ref.RD, "/") || ref.Volume < 0 || ref.Volume >= 65536 {
			t.Fatalf("accepted %q as %+v", handle, ref)
		}
		back, err := decide.ParseVolumeHandle(ref.String())
		if err != nil || back != ref {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", handle, ref, ref.String(), back, err)
		}
	})
}

// FuzzParsePolicy: never panics; an accepted policy has rules with non-empty
// keys, prints to a text that parses to the same policy, and applying it to
// any node yields pruned segments whose keys come from the rules.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{"true", "false", "1", "- fromSame: [topology.kubernetes.io/zone]", "[{fromSame: [a, b]}, {fromSame: [a]}]",
		"[{}]", "maybe", "{}", "fromSame: x", "- FromSame: [a]", "- fromSame: [\"\"]", "", "- fromSame: [a]\n- {}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		p, err := decide.ParsePolicy(text)
		if err != nil {
			return
		}
		if len(p) == 0 {
			t.Fatalf("accepted %q with no rules", text)
		}
		keys := map[string]bool{}
		for _, r := range p {
			for _, k := range r.FromSame {
				if strings.TrimSpace(k) == "" {
					t.Fatalf("accepted %q with an empty key", text)
				}
				keys[k] = true
			}
		}
		node := decide.Segment{decide.HostnameKey: "n1", "topology.kubernetes.io/zone": "z1", "a": "1"}
		segs := p.Apply(node)
		for i, s := range segs {
			for k, v := range s {
				if !keys[k] || node[k] != v {
					t.Fatalf("%q applied to %v gave %v", text, node, s)
				}
			}
			for j := range segs {
				if i != j && decide.SubsetOf(segs[j], s) {
					t.Fatalf("%q: segments not pruned: %v", text, segs)
				}
			}
		}
	})
}

// FuzzDecodeSavedPV: never panics; what decodes can be recreated (name, CSI
// driver and handle present) and survives an encode/decode round trip.
func FuzzDecodeSavedPV(f *testing.F) {
	pv := decide.Replacement(&corev1.PersistentVolume{Spec: corev1.PersistentVolumeSpec{
		PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "linstor.csi.linbit.com", VolumeHandle: "pvc-1"}},
	}}, decide.AffinityFor(decide.Topology{Segments: []decide.Segment{{decide.HostnameKey: "n1"}}}))
	pv.Name = "pvc-1"
	good, _ := decide.EncodeSavedPV(pv)
	for _, s := range []string{good, "{}", "null", "[]", `{"kind":"Pod"}`, `{"metadata":{"name":"x"}}`, good[:len(good)/2], "not json"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		got, err := decide.DecodeSavedPV(text)
		if err != nil {
			return
		}
		if got.Name == "" || got.Spec.CSI == nil || got.Spec.CSI.Driver == "" || got.Spec.CSI.VolumeHandle == "" {
			t.Fatalf("accepted an unusable saved PV: %s", text)
		}
		enc, err := decide.EncodeSavedPV(got)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decide.DecodeSavedPV(enc)
		if err != nil || again.Name != got.Name || again.Spec.CSI.VolumeHandle != got.Spec.CSI.VolumeHandle {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}

// FuzzAffinityMatches: a topology always matches its own rendering, in any
// term order, and never matches an affinity with a term changed.
func FuzzAffinityMatches(f *testing.F) {
	f.Add(`[{"linbit.com/hostname":"n1"},{"linbit.com/hostname":"n2"}]`, uint8(1))
	f.Add(`[{"topology.kubernetes.io/zone":"z1","x":"y"}]`, uint8(0))
	f.Add(`[]`, uint8(3))
	f.Fuzz(func(t *testing.T, segmentsJSON string, rotate uint8) {
		var segs []decide.Segment
		if json.Unmarshal([]byte(segmentsJSON), &segs) != nil {
			return
		}
		for _, s := range segs {
			if len(s) == 0 {
				return // an empty segment is "anywhere", handled before rendering
			}
		}
		topo := decide.Topology{Segments: segs}
		aff := decide.AffinityFor(topo)
		if !decide.AffinityMatches(aff, topo) {
			t.Fatalf("topology %v does not match its own affinity %s", segs, decide.DescribeAffinity(aff))
		}
		if aff == nil {
			return
		}
		terms := aff.Required.NodeSelectorTerms
		n := int(rotate) % len(terms)
		rotated := append(append([]corev1.NodeSelectorTerm(nil), terms[n:]...), terms[:n]...)
		if !decide.AffinityMatches(&corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: rotated}}, topo) {
			t.Fatalf("term order changed the match for %v", segs)
		}
		changed := aff.DeepCopy()
		e := &changed.Required.NodeSelectorTerms[n].MatchExpressions[0]
		e.Values = []string{e.Values[0] + "-moved"}
		if decide.AffinityMatches(changed, topo) && !decide.CoversAll([]decide.Segment{termSegmentOrNil(changed.Required.NodeSelectorTerms[n])}, segs) {
			t.Fatalf("changed affinity %s still matches %v", decide.DescribeAffinity(changed), segs)
		}
	})
}

func termSegmentOrNil(term corev1.NodeSelectorTerm) decide.Segment {
	s, _ := decide.TermSegment(&term)
	return s
}

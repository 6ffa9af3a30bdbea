package decide_test

import (
	"reflect"
	"testing"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
)

func TestParsePolicyAccepts(t *testing.T) {
	anywhere := decide.Policy{{}}
	local := decide.Policy{{FromSame: []string{"linbit.com/hostname"}}}
	cases := []struct {
		name string
		text string
		want decide.Policy
	}{
		{"true means anywhere", "true", anywhere},
		{"false means local only", "false", local},
		{"upper-case TRUE is a boolean", "TRUE", anywhere},
		{"1 is true", "1", anywhere},
		{"0 is false", "0", local},
		{"t is true", "t", anywhere},
		{"F is false", "F", local},
		{"boolean with surrounding white space", " true\n", anywhere},
		{"single zone rule in block style", "- fromSame: [topology.kubernetes.io/zone]", decide.Policy{{FromSame: []string{fixture.ZoneKey}}}},
		{"multi-rule list keeps rule order",
			"- fromSame: [topology.kubernetes.io/region]\n- fromSame:\n  - topology.kubernetes.io/zone\n  - example.com/rack\n",
			decide.Policy{{FromSame: []string{fixture.Region}}, {FromSame: []string{fixture.ZoneKey, "example.com/rack"}}}},
		{"flow style with two keys in one rule", "[{fromSame: [a, b]}]", decide.Policy{{FromSame: []string{"a", "b"}}}},
		{"flow style empty rule is anywhere", "[{}]", anywhere},
		{"empty fromSame list is an empty rule", "- fromSame: []", anywhere},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decide.ParsePolicy(tc.text)
			if err != nil {
				t.Fatalf("ParsePolicy(%q): unexpected error %v", tc.text, err)
			}
			if !decide.PolicyEqual(got, tc.want) {
				t.Errorf("ParsePolicy(%q) = %#v, want %#v", tc.text, got, tc.want)
			}
		})
	}
}

func TestParsePolicyRejects(t *testing.T) {
	cases := []struct {
		name string
		text string
	}{
		{"word that is no boolean", "maybe"},
		{"empty map instead of a list", "{}"},
		{"single rule not in a list", "fromSame: [a]"},
		{"fromSame not a list", "- fromSame: x"},
		{"unknown field", "- fromSame: [a]\n  toSame: [b]"},
		{"misspelt field", "- fromSam: [a]"},
		// LINSTOR CSI reads the rule with a case-sensitive YAML tag, so it
		// ignores "FromSame" and treats the rule as anywhere; the sidecar must
		// not read a different policy than the driver did.
		{"field name in the wrong case", "- FromSame: [topology.kubernetes.io/zone]"},
		{"empty text", ""},
		{"only white space", "  \n\t"},
		{"empty key", "- fromSame: ['']"},
		{"blank key", "- fromSame: [a, ' ']"},
		{"empty list has no rules", "[]"},
		{"null has no rules", "null"},
		{"comment only has no rules", "# nothing here"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decide.ParsePolicy(tc.text)
			if err == nil {
				t.Fatalf("ParsePolicy(%q) = %#v, want an error", tc.text, got)
			}
			if got != nil {
				t.Errorf("ParsePolicy(%q) returned policy %#v with its error", tc.text, got)
			}
		})
	}
}

func TestParsePolicyReturnsFreshBooleanPolicies(t *testing.T) {
	p, err := decide.ParsePolicy("false")
	if err != nil {
		t.Fatal(err)
	}
	p[0].FromSame[0] = "changed"
	if decide.PolicyLocalOnly[0].FromSame[0] != decide.HostnameKey {
		t.Fatalf("changing a parsed policy changed PolicyLocalOnly to %v", decide.PolicyLocalOnly)
	}
	again, err := decide.ParsePolicy("false")
	if err != nil {
		t.Fatal(err)
	}
	if again[0].FromSame[0] != decide.HostnameKey {
		t.Errorf("second parse of false = %v, want local only", again)
	}
}

func TestPolicyApply(t *testing.T) {
	node := fixture.Seg(decide.HostnameKey+"=n1", fixture.ZoneKey+"=a", fixture.Region+"=r1")
	cases := []struct {
		name   string
		policy decide.Policy
		node   decide.Segment
		want   []decide.Segment
	}{
		{"anywhere yields the empty segment", decide.PolicyAnywhere, node, []decide.Segment{{}}},
		{"local only yields the hostname", decide.PolicyLocalOnly, node, []decide.Segment{fixture.Host("n1")}},
		{"zone rule yields the zone", decide.Policy{{FromSame: []string{fixture.ZoneKey}}}, node, []decide.Segment{fixture.Zone("a")}},
		{"missing key is skipped, leaving anywhere",
			decide.Policy{{FromSame: []string{fixture.ZoneKey}}}, fixture.Host("n1"), []decide.Segment{{}}},
		{"missing key is skipped, other keys kept",
			decide.Policy{{FromSame: []string{fixture.Region, fixture.ZoneKey}}}, fixture.Seg(decide.HostnameKey+"=n1", fixture.Region+"=r1"), []decide.Segment{fixture.Seg(fixture.Region + "=r1")}},
		{"two keys in one rule form one segment",
			decide.Policy{{FromSame: []string{fixture.Region, fixture.ZoneKey}}}, node, []decide.Segment{fixture.Seg(fixture.Region+"=r1", fixture.ZoneKey+"=a")}},
		{"two disjoint rules give two segments",
			decide.Policy{{FromSame: []string{fixture.Region}}, {FromSame: []string{fixture.ZoneKey}}}, node,
			[]decide.Segment{fixture.Seg(fixture.Region + "=r1"), fixture.Zone("a")}},
		{"narrower rule pruned by broader rule",
			decide.Policy{{FromSame: []string{fixture.Region, fixture.ZoneKey}}, {FromSame: []string{fixture.Region}}}, node,
			[]decide.Segment{fixture.Seg(fixture.Region + "=r1")}},
		{"empty rule prunes every other rule",
			decide.Policy{{FromSame: []string{fixture.ZoneKey}}, {}}, node, []decide.Segment{{}}},
		{"same rule twice yields one segment",
			decide.Policy{{FromSame: []string{fixture.ZoneKey}}, {FromSame: []string{fixture.ZoneKey}}}, node, []decide.Segment{fixture.Zone("a")}},
		{"no rules yield no segments", decide.Policy{}, node, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.policy.Apply(tc.node)
			if len(got) != len(tc.want) || !fixture.SameSegmentSet(got, tc.want) {
				t.Errorf("Apply = %v, want %v", fixture.SegSet(got), fixture.SegSet(tc.want))
			}
		})
	}
}

func TestPrune(t *testing.T) {
	a1 := fixture.Seg("a=1")
	cases := []struct {
		name string
		in   []decide.Segment
		want []decide.Segment
	}{
		{"duplicates collapse", []decide.Segment{fixture.Seg("a=1"), fixture.Seg("a=1")}, []decide.Segment{a1}},
		{"superset after subset dropped", []decide.Segment{fixture.Seg("a=1", "b=1"), fixture.Seg("a=1")}, []decide.Segment{a1}},
		{"every superset of a kept segment dropped",
			[]decide.Segment{fixture.Seg("a=1"), fixture.Seg("a=1", "b=1"), fixture.Seg("a=1", "b=2")}, []decide.Segment{a1}},
		{"supersets before their subset dropped",
			[]decide.Segment{fixture.Seg("a=1", "b=2"), fixture.Seg("a=1", "b=1"), fixture.Seg("a=1")}, []decide.Segment{a1}},
		{"incomparable segments of equal size kept",
			[]decide.Segment{fixture.Seg("a=1", "b=1"), fixture.Seg("a=1", "b=2")}, []decide.Segment{fixture.Seg("a=1", "b=1"), fixture.Seg("a=1", "b=2")}},
		{"different values are not subsets", []decide.Segment{fixture.Seg("a=1"), fixture.Seg("a=2", "b=1")}, []decide.Segment{fixture.Seg("a=1"), fixture.Seg("a=2", "b=1")}},
		{"empty segment swallows everything", []decide.Segment{fixture.Seg("a=1"), {}, fixture.Seg("b=2")}, []decide.Segment{{}}},
		{"nothing in, nothing out", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := decide.Prune(tc.in)
			if len(got) != len(tc.want) || !fixture.SameSegmentSet(got, tc.want) {
				t.Errorf("Prune(%v) = %v, want %v", fixture.SegSet(tc.in), fixture.SegSet(got), fixture.SegSet(tc.want))
			}
			for i := 1; i < len(got); i++ {
				if len(got[i]) < len(got[i-1]) {
					t.Errorf("Prune result not sorted by size: %v", got)
				}
			}
		})
	}
}

func TestPruneLeavesItsInputAlone(t *testing.T) {
	in := []decide.Segment{fixture.Seg("a=1", "b=1"), fixture.Seg("a=1")}
	decide.Prune(in)
	if len(in[0]) != 2 || len(in[1]) != 1 {
		t.Errorf("Prune reordered or changed its input: %v", in)
	}
}

func TestPolicyStringRoundTrips(t *testing.T) {
	cases := []struct {
		name   string
		policy decide.Policy
		want   string
	}{
		{"anywhere prints true", decide.PolicyAnywhere, "true"},
		{"local only prints false", decide.PolicyLocalOnly, "false"},
		{"rules print in flow style", decide.Policy{{FromSame: []string{fixture.Region}}, {FromSame: []string{"a", "b"}}},
			"[{fromSame: [topology.kubernetes.io/region]}, {fromSame: [a, b]}]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.policy.String(); got != tc.want {
				t.Fatalf("String() = %q, want %q", got, tc.want)
			}
			back, err := decide.ParsePolicy(tc.policy.String())
			if err != nil || !decide.PolicyEqual(back, tc.policy) {
				t.Errorf("ParsePolicy(String()) = %#v, %v; want %#v", back, err, tc.policy)
			}
		})
	}
}

func TestSegmentEqual(t *testing.T) {
	cases := []struct {
		name string
		a, b decide.Segment
		want bool
	}{
		{"same keys and values", fixture.Seg("a=1", "b=2"), fixture.Seg("b=2", "a=1"), true},
		{"different value", fixture.Seg("a=1"), fixture.Seg("a=2"), false},
		{"subset is not equal", fixture.Seg("a=1"), fixture.Seg("a=1", "b=2"), false},
		{"superset is not equal", fixture.Seg("a=1", "b=2"), fixture.Seg("a=1"), false},
		{"both empty", decide.Segment{}, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.Equal(tc.b); got != tc.want {
				t.Errorf("%v.Equal(%v) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
			if got := tc.b.Equal(tc.a); got != tc.want {
				t.Errorf("%v.Equal(%v) = %v, want %v (symmetry)", tc.b, tc.a, got, tc.want)
			}
		})
	}
}

func TestWellKnownPoliciesMatchLinstorCSI(t *testing.T) {
	if !reflect.DeepEqual(decide.PolicyLocalOnly, decide.Policy{{FromSame: []string{"linbit.com/hostname"}}}) {
		t.Errorf("PolicyLocalOnly = %#v, want [{fromSame: [linbit.com/hostname]}]", decide.PolicyLocalOnly)
	}
	if len(decide.PolicyAnywhere) != 1 || len(decide.PolicyAnywhere[0].FromSame) != 0 {
		t.Errorf("PolicyAnywhere = %#v, want one empty rule", decide.PolicyAnywhere)
	}
}

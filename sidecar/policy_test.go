package sidecar

import (
	"reflect"
	"testing"
)

func TestParsePolicyAccepts(t *testing.T) {
	anywhere := Policy{{}}
	local := Policy{{FromSame: []string{"linbit.com/hostname"}}}
	cases := []struct {
		name string
		text string
		want Policy
	}{
		{"true means anywhere", "true", anywhere},
		{"false means local only", "false", local},
		{"upper-case TRUE is a boolean", "TRUE", anywhere},
		{"1 is true", "1", anywhere},
		{"0 is false", "0", local},
		{"t is true", "t", anywhere},
		{"F is false", "F", local},
		{"boolean with surrounding white space", " true\n", anywhere},
		{"single zone rule in block style", "- fromSame: [topology.kubernetes.io/zone]", Policy{{FromSame: []string{fxZoneKey}}}},
		{"multi-rule list keeps rule order",
			"- fromSame: [topology.kubernetes.io/region]\n- fromSame:\n  - topology.kubernetes.io/zone\n  - example.com/rack\n",
			Policy{{FromSame: []string{fxRegion}}, {FromSame: []string{fxZoneKey, "example.com/rack"}}}},
		{"flow style with two keys in one rule", "[{fromSame: [a, b]}]", Policy{{FromSame: []string{"a", "b"}}}},
		{"flow style empty rule is anywhere", "[{}]", anywhere},
		{"empty fromSame list is an empty rule", "- fromSame: []", anywhere},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePolicy(tc.text)
			if err != nil {
				t.Fatalf("ParsePolicy(%q): unexpected error %v", tc.text, err)
			}
			if !policyEqual(got, tc.want) {
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
			got, err := ParsePolicy(tc.text)
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
	p, err := ParsePolicy("false")
	if err != nil {
		t.Fatal(err)
	}
	p[0].FromSame[0] = "changed"
	if PolicyLocalOnly[0].FromSame[0] != HostnameKey {
		t.Fatalf("changing a parsed policy changed PolicyLocalOnly to %v", PolicyLocalOnly)
	}
	again, err := ParsePolicy("false")
	if err != nil {
		t.Fatal(err)
	}
	if again[0].FromSame[0] != HostnameKey {
		t.Errorf("second parse of false = %v, want local only", again)
	}
}

func TestPolicyApply(t *testing.T) {
	node := seg(HostnameKey+"=n1", fxZoneKey+"=a", fxRegion+"=r1")
	cases := []struct {
		name   string
		policy Policy
		node   Segment
		want   []Segment
	}{
		{"anywhere yields the empty segment", PolicyAnywhere, node, []Segment{{}}},
		{"local only yields the hostname", PolicyLocalOnly, node, []Segment{host("n1")}},
		{"zone rule yields the zone", Policy{{FromSame: []string{fxZoneKey}}}, node, []Segment{zone("a")}},
		{"missing key is skipped, leaving anywhere",
			Policy{{FromSame: []string{fxZoneKey}}}, host("n1"), []Segment{{}}},
		{"missing key is skipped, other keys kept",
			Policy{{FromSame: []string{fxRegion, fxZoneKey}}}, seg(HostnameKey+"=n1", fxRegion+"=r1"), []Segment{seg(fxRegion + "=r1")}},
		{"two keys in one rule form one segment",
			Policy{{FromSame: []string{fxRegion, fxZoneKey}}}, node, []Segment{seg(fxRegion+"=r1", fxZoneKey+"=a")}},
		{"two disjoint rules give two segments",
			Policy{{FromSame: []string{fxRegion}}, {FromSame: []string{fxZoneKey}}}, node,
			[]Segment{seg(fxRegion + "=r1"), zone("a")}},
		{"narrower rule pruned by broader rule",
			Policy{{FromSame: []string{fxRegion, fxZoneKey}}, {FromSame: []string{fxRegion}}}, node,
			[]Segment{seg(fxRegion + "=r1")}},
		{"empty rule prunes every other rule",
			Policy{{FromSame: []string{fxZoneKey}}, {}}, node, []Segment{{}}},
		{"same rule twice yields one segment",
			Policy{{FromSame: []string{fxZoneKey}}, {FromSame: []string{fxZoneKey}}}, node, []Segment{zone("a")}},
		{"no rules yield no segments", Policy{}, node, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.policy.Apply(tc.node)
			if len(got) != len(tc.want) || !sameSegmentSet(got, tc.want) {
				t.Errorf("Apply = %v, want %v", segSet(got), segSet(tc.want))
			}
		})
	}
}

func TestPrune(t *testing.T) {
	a1 := seg("a=1")
	cases := []struct {
		name string
		in   []Segment
		want []Segment
	}{
		{"duplicates collapse", []Segment{seg("a=1"), seg("a=1")}, []Segment{a1}},
		{"superset after subset dropped", []Segment{seg("a=1", "b=1"), seg("a=1")}, []Segment{a1}},
		{"every superset of a kept segment dropped",
			[]Segment{seg("a=1"), seg("a=1", "b=1"), seg("a=1", "b=2")}, []Segment{a1}},
		{"supersets before their subset dropped",
			[]Segment{seg("a=1", "b=2"), seg("a=1", "b=1"), seg("a=1")}, []Segment{a1}},
		{"incomparable segments of equal size kept",
			[]Segment{seg("a=1", "b=1"), seg("a=1", "b=2")}, []Segment{seg("a=1", "b=1"), seg("a=1", "b=2")}},
		{"different values are not subsets", []Segment{seg("a=1"), seg("a=2", "b=1")}, []Segment{seg("a=1"), seg("a=2", "b=1")}},
		{"empty segment swallows everything", []Segment{seg("a=1"), {}, seg("b=2")}, []Segment{{}}},
		{"nothing in, nothing out", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Prune(tc.in)
			if len(got) != len(tc.want) || !sameSegmentSet(got, tc.want) {
				t.Errorf("Prune(%v) = %v, want %v", segSet(tc.in), segSet(got), segSet(tc.want))
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
	in := []Segment{seg("a=1", "b=1"), seg("a=1")}
	Prune(in)
	if len(in[0]) != 2 || len(in[1]) != 1 {
		t.Errorf("Prune reordered or changed its input: %v", in)
	}
}

func TestPolicyStringRoundTrips(t *testing.T) {
	cases := []struct {
		name   string
		policy Policy
		want   string
	}{
		{"anywhere prints true", PolicyAnywhere, "true"},
		{"local only prints false", PolicyLocalOnly, "false"},
		{"rules print in flow style", Policy{{FromSame: []string{fxRegion}}, {FromSame: []string{"a", "b"}}},
			"[{fromSame: [topology.kubernetes.io/region]}, {fromSame: [a, b]}]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.policy.String(); got != tc.want {
				t.Fatalf("String() = %q, want %q", got, tc.want)
			}
			back, err := ParsePolicy(tc.policy.String())
			if err != nil || !policyEqual(back, tc.policy) {
				t.Errorf("ParsePolicy(String()) = %#v, %v; want %#v", back, err, tc.policy)
			}
		})
	}
}

func TestSegmentEqual(t *testing.T) {
	cases := []struct {
		name string
		a, b Segment
		want bool
	}{
		{"same keys and values", seg("a=1", "b=2"), seg("b=2", "a=1"), true},
		{"different value", seg("a=1"), seg("a=2"), false},
		{"subset is not equal", seg("a=1"), seg("a=1", "b=2"), false},
		{"superset is not equal", seg("a=1", "b=2"), seg("a=1"), false},
		{"both empty", Segment{}, nil, true},
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
	if !reflect.DeepEqual(PolicyLocalOnly, Policy{{FromSame: []string{"linbit.com/hostname"}}}) {
		t.Errorf("PolicyLocalOnly = %#v, want [{fromSame: [linbit.com/hostname]}]", PolicyLocalOnly)
	}
	if len(PolicyAnywhere) != 1 || len(PolicyAnywhere[0].FromSame) != 0 {
		t.Errorf("PolicyAnywhere = %#v, want one empty rule", PolicyAnywhere)
	}
}

package decide

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"go.yaml.in/yaml/v3"
)

// HostnameKey is the topology key LINSTOR CSI uses for "this very node".
const HostnameKey = "linbit.com/hostname"

// Segment is one CSI topology segment: topology key to value.
type Segment map[string]string

// PolicyRule allows access from every node that shares the listed keys' values
// with a node holding a replica. An empty rule allows access from anywhere.
type PolicyRule struct {
	FromSame []string `json:"fromSame,omitempty" yaml:"fromSame,omitempty"`
}

// Policy is a volume's remote access policy, as LINSTOR CSI reads it from the
// StorageClass parameter allowRemoteVolumeAccess.
type Policy []PolicyRule

// Well-known policies, matching LINSTOR CSI's boolean text forms.
var (
	PolicyAnywhere  = Policy{{}}
	PolicyLocalOnly = Policy{{FromSame: []string{HostnameKey}}}
)

// ParsePolicy reads a policy in any of LINSTOR CSI's text forms: a boolean
// ("true": anywhere, "false": local only) or a YAML list of fromSame rules.
// Unlike LINSTOR CSI it rejects unknown fields and empty text: a typo there would
// silently mean "anywhere", and the sidecar would rather warn than act on it.
func ParsePolicy(text string) (Policy, error) {
	if cached, ok := policyCache.Load(text); ok {
		return clonePolicy(cached.(Policy)), nil
	}
	p, err := parsePolicy(text)
	if err == nil && policyCacheSize.Add(1) <= maxCachedPolicies {
		policyCache.Store(text, clonePolicy(p))
	}
	return p, err
}

// Policies are parsed once per distinct text: a cluster has a handful of
// StorageClasses, and YAML parsing is most of a decision's cost otherwise.
// Callers get their own copy.
var (
	policyCache     sync.Map
	policyCacheSize atomic.Int64
)

// maxCachedPolicies bounds the cache against PVs each carrying their own text.
const maxCachedPolicies = 4096

func parsePolicy(text string) (Policy, error) {
	trimmed := strings.TrimSpace(text)
	if trimmed == "" {
		return nil, fmt.Errorf("remote access policy is empty")
	}
	if b, err := strconv.ParseBool(trimmed); err == nil {
		if b {
			return clonePolicy(PolicyAnywhere), nil
		}
		return clonePolicy(PolicyLocalOnly), nil
	}
	var p Policy
	dec := yaml.NewDecoder(strings.NewReader(text))
	dec.KnownFields(true) // field names match exactly, as LINSTOR CSI's YAML parser matches them
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("remote access policy %q: not a boolean nor a list of fromSame rules: %w", text, err)
	}
	if len(p) == 0 {
		return nil, fmt.Errorf("remote access policy %q: no rules", text)
	}
	for i, rule := range p {
		for _, key := range rule.FromSame {
			if strings.TrimSpace(key) == "" {
				return nil, fmt.Errorf("remote access policy %q: rule %d has an empty fromSame key", text, i)
			}
		}
	}
	return p, nil
}

func clonePolicy(p Policy) Policy {
	out := make(Policy, len(p))
	for i, r := range p {
		out[i] = PolicyRule{FromSame: append([]string(nil), r.FromSame...)}
	}
	return out
}

// String renders the policy in LINSTOR CSI's text form, for logs and reports.
func (p Policy) String() string {
	switch {
	case policyEqual(p, PolicyAnywhere):
		return "true"
	case policyEqual(p, PolicyLocalOnly):
		return "false"
	}
	parts := make([]string, len(p))
	for i, r := range p {
		parts[i] = "{fromSame: [" + strings.Join(r.FromSame, ", ") + "]}"
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func policyEqual(a, b Policy) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i].FromSame) != len(b[i].FromSame) {
			return false
		}
		for j := range a[i].FromSame {
			if a[i].FromSame[j] != b[i].FromSame[j] {
				return false
			}
		}
	}
	return true
}

// Apply turns the segments of one node holding a replica into the segments from
// which the volume may be accessed under this policy. Keys a node lacks are
// skipped, so a rule can yield the empty segment, which means "anywhere".
func (p Policy) Apply(node Segment) []Segment {
	out := make([]Segment, 0, len(p))
	for _, rule := range p {
		seg := Segment{}
		for _, key := range rule.FromSame {
			if v, ok := node[key]; ok {
				seg[key] = v
			}
		}
		out = append(out, seg)
	}
	return Prune(out)
}

// Prune drops duplicate segments and every segment that is a superset of one
// already kept: a broader segment already allows everything a narrower one does.
func Prune(segments []Segment) []Segment {
	sorted := append([]Segment(nil), segments...)
	sort.SliceStable(sorted, func(i, j int) bool { return len(sorted[i]) < len(sorted[j]) })
	kept := make([]Segment, 0, len(sorted))
next:
	for _, s := range sorted {
		for _, k := range kept {
			if k.subsetOf(s) {
				continue next
			}
		}
		kept = append(kept, s)
	}
	return kept
}

// subsetOf reports whether every key of s has the same value in other.
func (s Segment) subsetOf(other Segment) bool {
	for k, v := range s {
		if ov, ok := other[k]; !ok || ov != v {
			return false
		}
	}
	return true
}

// Equal reports whether two segments have the same keys and values.
func (s Segment) Equal(other Segment) bool {
	return len(s) == len(other) && s.subsetOf(other)
}

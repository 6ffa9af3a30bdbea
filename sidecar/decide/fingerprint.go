package decide

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
)

// Fingerprint sums what an action is based on: the kind, the PV (UID,
// affinity, labels, annotations other than the replace's own marks), the
// wanted affinity and the saved state. A
// failed attempt that only left the replace's own marks behind does not count
// as a change; an edit by a person, or a new answer from LINSTOR, does.
func Fingerprint(a Action) uint64 {
	h := fnv.New64a()
	w := func(parts ...string) {
		for _, p := range parts {
			_, _ = h.Write([]byte(p))
			_, _ = h.Write([]byte{0})
		}
	}
	w(string(a.Kind), DescribeAffinity(a.Affinity))
	if a.Saved != nil {
		w(a.Saved.Raw)
	}
	if pv := a.PV; pv != nil {
		w(string(pv.UID), DescribeAffinity(pv.Spec.NodeAffinity))
		writeMap(w, pv.Labels, nil)
		writeMap(w, pv.Annotations, func(k string) bool {
			return k == RetainedFromAnnotation || strings.HasSuffix(k, "/skip-reclaim")
		})
	}
	return h.Sum64()
}

func writeMap(w func(...string), m map[string]string, skip func(string) bool) {
	keys := make([]string, 0, len(m))
	for k := range m {
		if skip == nil || !skip(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		w(k, m[k])
	}
	w(fmt.Sprint(len(keys)))
}

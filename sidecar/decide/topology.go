package decide

import (
	"sort"
	"strings"
)

// Resource flags that keep a replica from counting as holding the data.
// LINSTOR CSI's list, plus DRBD_DELETE: the first phase of LINSTOR's
// deletion, while the satellite takes DRBD down (then DELETE, then gone),
// which LINSTOR CSI still counts. The sidecar is stricter there; see
// docs/design.md, "Replicas being deleted".
var excludedResourceFlags = []string{"DELETE", "DRBD_DELETE", "FAILED_DEPLOYMENT", "FAILED_DISCONNECT", "DISKLESS"}

// Resource is one LINSTOR resource: a volume's presence on a node.
type Resource struct {
	Name  string
	Node  string
	Flags []string
}

// Diskful reports whether the resource holds the data and is healthy: named,
// placed, and flagged neither diskless (which covers TIE_BREAKER and
// DRBD_DISKLESS) nor being deleted (DELETE or DRBD_DELETE) nor failed.
func (r Resource) Diskful() bool {
	if r.Name == "" || r.Node == "" {
		return false
	}
	for _, f := range r.Flags {
		for _, x := range excludedResourceFlags {
			if strings.EqualFold(f, x) {
				return false
			}
		}
	}
	return true
}

// Topology is where a volume may be accessed from.
type Topology struct {
	// Anywhere: some rule yielded the empty segment; the PV gets no affinity.
	Anywhere bool
	// Segments, pruned per node; compare as a set.
	Segments []Segment
	// Diskful lists the nodes holding the data, sorted.
	Diskful []string
	// UnknownNodes lists diskful nodes absent from LINSTOR's node list.
	UnknownNodes []string
}

// AccessibleTopology computes where a volume may be accessed from, as LINSTOR
// CSI does: for each node with a diskful replica, that node's topology segments
// (its properties under the property namespace, prefix stripped, plus
// linbit.com/hostname), passed through the remote access policy.
// nodes maps node name to its segments, already stripped by the namespace.
func AccessibleTopology(resources []Resource, nodes map[string]Segment, policy Policy) Topology {
	var t Topology
	seen := map[string]bool{}
	for _, r := range resources {
		if !r.Diskful() || seen[r.Node] {
			continue
		}
		seen[r.Node] = true
		t.Diskful = append(t.Diskful, r.Node)
	}
	sort.Strings(t.Diskful)
	for _, node := range t.Diskful {
		if _, known := nodes[node]; !known {
			t.UnknownNodes = append(t.UnknownNodes, node)
		}
	}
	for _, node := range t.Diskful {
		props := nodes[node]
		seg := make(Segment, len(props)+1)
		for k, v := range props {
			seg[k] = v
		}
		seg[HostnameKey] = node
		for _, s := range policy.Apply(seg) {
			if len(s) == 0 {
				return Topology{Anywhere: true, Diskful: t.Diskful, UnknownNodes: t.UnknownNodes}
			}
			t.Segments = append(t.Segments, s)
		}
	}
	return t
}

// NodeSegments strips the property namespace from a LINSTOR node's properties,
// keeping only those under it: the node's topology as LINSTOR CSI reports it.
func NodeSegments(props map[string]string, namespace string) Segment {
	prefix := namespace + "/"
	seg := Segment{}
	for k, v := range props {
		if strings.HasPrefix(k, prefix) && len(k) > len(prefix) {
			seg[k[len(prefix):]] = v
		}
	}
	return seg
}

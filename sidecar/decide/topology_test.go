package decide_test

import (
	"reflect"
	"testing"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
)

func TestResourceDiskful(t *testing.T) {
	cases := []struct {
		name string
		r    decide.Resource
		want bool
	}{
		{"plain diskful resource counts", decide.Resource{Name: "rd", Node: "n1"}, true},
		{"being deleted", decide.Resource{Name: "rd", Node: "n1", Flags: []string{"DELETE"}}, false},
		{"first phase of a deletion (LINSTOR CSI still counts it)", decide.Resource{Name: "rd", Node: "n1", Flags: []string{"DRBD_DELETE"}}, false},
		{"second phase of a deletion", decide.Resource{Name: "rd", Node: "n1", Flags: []string{"DELETE", "DRBD_DELETE"}}, false},
		{"inactive still counts", decide.Resource{Name: "rd", Node: "n1", Flags: []string{"INACTIVE"}}, true},
		{"resizing still counts", decide.Resource{Name: "rd", Node: "n1", Flags: []string{"RESIZE"}}, true},
		{"failed deployment", decide.Resource{Name: "rd", Node: "n1", Flags: []string{"FAILED_DEPLOYMENT"}}, false},
		{"failed disconnect", decide.Resource{Name: "rd", Node: "n1", Flags: []string{"FAILED_DISCONNECT"}}, false},
		{"diskless", decide.Resource{Name: "rd", Node: "n1", Flags: []string{"DISKLESS"}}, false},
		{"tie breaker", decide.Resource{Name: "rd", Node: "n1", Flags: []string{"DISKLESS", "TIE_BREAKER"}}, false},
		{"drbd diskless client", decide.Resource{Name: "rd", Node: "n1", Flags: []string{"DRBD_DISKLESS", "DISKLESS"}}, false},
		{"excluded flag among others", decide.Resource{Name: "rd", Node: "n1", Flags: []string{"RESIZE", "DELETE"}}, false},
		{"no name", decide.Resource{Node: "n1"}, false},
		{"no node", decide.Resource{Name: "rd"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.Diskful(); got != tc.want {
				t.Errorf("%+v.Diskful() = %v, want %v", tc.r, got, tc.want)
			}
		})
	}
}

func TestNodeSegments(t *testing.T) {
	props := map[string]string{
		"Aux/topology/topology.kubernetes.io/zone": "a",
		"Aux/topology/linbit.com/hostname":         "n1",
		"Aux/topologyX/example.com/rack":           "r9",
		"Aux/other":                                "x",
		"StorDriver/StorPoolName":                  "thin",
		"CurStltConnName":                          "default",
	}
	cases := []struct {
		name      string
		namespace string
		want      decide.Segment
	}{
		{"operator v2 namespace strips Aux/topology/", "Aux/topology",
			fixture.Seg("topology.kubernetes.io/zone=a", "linbit.com/hostname=n1")},
		{"older Aux namespace strips Aux/", "Aux",
			fixture.Seg("topology/topology.kubernetes.io/zone=a", "topology/linbit.com/hostname=n1",
				"topologyX/example.com/rack=r9", "other=x")},
		{"namespace without matching properties", "Aux/none", decide.Segment{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := decide.NodeSegments(props, tc.namespace)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("NodeSegments(_, %q) = %v, want %v", tc.namespace, got, tc.want)
			}
		})
	}
}

func TestAccessibleTopology(t *testing.T) {
	nodes := map[string]decide.Segment{
		"n1": {fixture.ZoneKey: "a", fixture.Region: "r1"},
		"n2": {fixture.ZoneKey: "b", fixture.Region: "r1"},
		"n3": {fixture.ZoneKey: "a", fixture.Region: "r1"},
		"n4": {fixture.Region: "r2"},
		"n5": {decide.HostnameKey: "not-n5", fixture.ZoneKey: "c"},
	}
	zonePolicy := decide.Policy{{FromSame: []string{fixture.ZoneKey}}}
	cases := []struct {
		name         string
		resources    []decide.Resource
		policy       decide.Policy
		wantAnywhere bool
		wantSegs     []decide.Segment
		wantDiskful  []string
		wantUnknown  []string
	}{
		{name: "local only: one hostname segment per diskful node",
			resources:   []decide.Resource{fixture.Res("n2"), fixture.Res("n1"), fixture.Res("n3", "DISKLESS", "TIE_BREAKER"), fixture.Res("n4", "DELETE")},
			policy:      decide.PolicyLocalOnly,
			wantSegs:    []decide.Segment{fixture.Host("n1"), fixture.Host("n2")},
			wantDiskful: []string{"n1", "n2"}},
		{name: "failed and nameless resources do not count",
			resources: []decide.Resource{fixture.Res("n1"), fixture.Res("n2", "FAILED_DEPLOYMENT"), fixture.Res("n3", "FAILED_DISCONNECT"),
				{Node: "n4"}, {Name: "rd"}, fixture.Res("n5", "DRBD_DISKLESS", "DISKLESS")},
			policy:      decide.PolicyLocalOnly,
			wantSegs:    []decide.Segment{fixture.Host("n1")},
			wantDiskful: []string{"n1"}},
		{name: "hostname segment is the node name, not the property",
			resources:   []decide.Resource{fixture.Res("n5")},
			policy:      decide.PolicyLocalOnly,
			wantSegs:    []decide.Segment{fixture.Host("n5")},
			wantDiskful: []string{"n5"}},
		{name: "zone policy yields one segment per distinct zone",
			resources:   []decide.Resource{fixture.Res("n1"), fixture.Res("n2"), fixture.Res("n3")},
			policy:      zonePolicy,
			wantSegs:    []decide.Segment{fixture.Zone("a"), fixture.Zone("b")},
			wantDiskful: []string{"n1", "n2", "n3"}},
		{name: "zone policy with a node lacking the zone is anywhere",
			resources:    []decide.Resource{fixture.Res("n1"), fixture.Res("n4")},
			policy:       zonePolicy,
			wantAnywhere: true,
			wantDiskful:  []string{"n1", "n4"}},
		{name: "anywhere policy is anywhere",
			resources:    []decide.Resource{fixture.Res("n1")},
			policy:       decide.PolicyAnywhere,
			wantAnywhere: true,
			wantDiskful:  []string{"n1"}},
		{name: "region and zone rules yield both per node",
			resources:   []decide.Resource{fixture.Res("n1"), fixture.Res("n2")},
			policy:      decide.Policy{{FromSame: []string{fixture.Region}}, {FromSame: []string{fixture.ZoneKey}}},
			wantSegs:    []decide.Segment{fixture.Seg(fixture.Region + "=r1"), fixture.Zone("a"), fixture.Zone("b")},
			wantDiskful: []string{"n1", "n2"}},
		{name: "rule over zone and hostname keeps both keys",
			resources:   []decide.Resource{fixture.Res("n1")},
			policy:      decide.Policy{{FromSame: []string{fixture.ZoneKey, decide.HostnameKey}}},
			wantSegs:    []decide.Segment{fixture.Seg(fixture.ZoneKey+"=a", decide.HostnameKey+"=n1")},
			wantDiskful: []string{"n1"}},
		{name: "unknown node is reported and has only its hostname",
			resources:   []decide.Resource{fixture.Res("n9"), fixture.Res("n1")},
			policy:      decide.PolicyLocalOnly,
			wantSegs:    []decide.Segment{fixture.Host("n1"), fixture.Host("n9")},
			wantDiskful: []string{"n1", "n9"},
			wantUnknown: []string{"n9"}},
		{name: "two resources on one node count once",
			resources:   []decide.Resource{fixture.Res("n1"), fixture.Res("n1")},
			policy:      decide.PolicyLocalOnly,
			wantSegs:    []decide.Segment{fixture.Host("n1")},
			wantDiskful: []string{"n1"}},
		{name: "no diskful resource: no segments, not anywhere",
			resources: []decide.Resource{fixture.Res("n1", "DISKLESS")},
			policy:    decide.PolicyAnywhere},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := decide.AccessibleTopology(tc.resources, nodes, tc.policy)
			if got.Anywhere != tc.wantAnywhere {
				t.Errorf("Anywhere = %v, want %v", got.Anywhere, tc.wantAnywhere)
			}
			if tc.wantAnywhere && len(got.Segments) != 0 {
				t.Errorf("anywhere topology carries segments %v", fixture.SegSet(got.Segments))
			}
			if !fixture.SameSegmentSet(got.Segments, tc.wantSegs) {
				t.Errorf("Segments = %v, want %v", fixture.SegSet(got.Segments), fixture.SegSet(tc.wantSegs))
			}
			if !reflect.DeepEqual(got.Diskful, tc.wantDiskful) {
				t.Errorf("Diskful = %v, want %v", got.Diskful, tc.wantDiskful)
			}
			if !reflect.DeepEqual(got.UnknownNodes, tc.wantUnknown) {
				t.Errorf("UnknownNodes = %v, want %v", got.UnknownNodes, tc.wantUnknown)
			}
		})
	}
}

func TestAccessibleTopologyLeavesNodesAlone(t *testing.T) {
	nodes := map[string]decide.Segment{"n1": {fixture.ZoneKey: "a"}}
	decide.AccessibleTopology([]decide.Resource{fixture.Res("n1")}, nodes, decide.PolicyLocalOnly)
	if len(nodes["n1"]) != 1 || nodes["n1"][fixture.ZoneKey] != "a" {
		t.Errorf("AccessibleTopology changed the node map: %v", nodes)
	}
}

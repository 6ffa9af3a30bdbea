package sidecar

import (
	"reflect"
	"testing"
)

func TestResourceDiskful(t *testing.T) {
	cases := []struct {
		name string
		r    Resource
		want bool
	}{
		{"plain diskful resource counts", Resource{Name: "rd", Node: "n1"}, true},
		{"being deleted", Resource{Name: "rd", Node: "n1", Flags: []string{"DELETE"}}, false},
		{"first phase of a deletion (LINSTOR CSI still counts it)", Resource{Name: "rd", Node: "n1", Flags: []string{"DRBD_DELETE"}}, false},
		{"second phase of a deletion", Resource{Name: "rd", Node: "n1", Flags: []string{"DELETE", "DRBD_DELETE"}}, false},
		{"inactive still counts", Resource{Name: "rd", Node: "n1", Flags: []string{"INACTIVE"}}, true},
		{"resizing still counts", Resource{Name: "rd", Node: "n1", Flags: []string{"RESIZE"}}, true},
		{"failed deployment", Resource{Name: "rd", Node: "n1", Flags: []string{"FAILED_DEPLOYMENT"}}, false},
		{"failed disconnect", Resource{Name: "rd", Node: "n1", Flags: []string{"FAILED_DISCONNECT"}}, false},
		{"diskless", Resource{Name: "rd", Node: "n1", Flags: []string{"DISKLESS"}}, false},
		{"tie breaker", Resource{Name: "rd", Node: "n1", Flags: []string{"DISKLESS", "TIE_BREAKER"}}, false},
		{"drbd diskless client", Resource{Name: "rd", Node: "n1", Flags: []string{"DRBD_DISKLESS", "DISKLESS"}}, false},
		{"excluded flag among others", Resource{Name: "rd", Node: "n1", Flags: []string{"RESIZE", "DELETE"}}, false},
		{"no name", Resource{Node: "n1"}, false},
		{"no node", Resource{Name: "rd"}, false},
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
		want      Segment
	}{
		{"operator v2 namespace strips Aux/topology/", "Aux/topology",
			seg("topology.kubernetes.io/zone=a", "linbit.com/hostname=n1")},
		{"older Aux namespace strips Aux/", "Aux",
			seg("topology/topology.kubernetes.io/zone=a", "topology/linbit.com/hostname=n1",
				"topologyX/example.com/rack=r9", "other=x")},
		{"namespace without matching properties", "Aux/none", Segment{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := NodeSegments(props, tc.namespace)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("NodeSegments(_, %q) = %v, want %v", tc.namespace, got, tc.want)
			}
		})
	}
}

func TestAccessibleTopology(t *testing.T) {
	nodes := map[string]Segment{
		"n1": {fxZoneKey: "a", fxRegion: "r1"},
		"n2": {fxZoneKey: "b", fxRegion: "r1"},
		"n3": {fxZoneKey: "a", fxRegion: "r1"},
		"n4": {fxRegion: "r2"},
		"n5": {HostnameKey: "not-n5", fxZoneKey: "c"},
	}
	zonePolicy := Policy{{FromSame: []string{fxZoneKey}}}
	cases := []struct {
		name         string
		resources    []Resource
		policy       Policy
		wantAnywhere bool
		wantSegs     []Segment
		wantDiskful  []string
		wantUnknown  []string
	}{
		{name: "local only: one hostname segment per diskful node",
			resources:   []Resource{res("n2"), res("n1"), res("n3", "DISKLESS", "TIE_BREAKER"), res("n4", "DELETE")},
			policy:      PolicyLocalOnly,
			wantSegs:    []Segment{host("n1"), host("n2")},
			wantDiskful: []string{"n1", "n2"}},
		{name: "failed and nameless resources do not count",
			resources: []Resource{res("n1"), res("n2", "FAILED_DEPLOYMENT"), res("n3", "FAILED_DISCONNECT"),
				{Node: "n4"}, {Name: "rd"}, res("n5", "DRBD_DISKLESS", "DISKLESS")},
			policy:      PolicyLocalOnly,
			wantSegs:    []Segment{host("n1")},
			wantDiskful: []string{"n1"}},
		{name: "hostname segment is the node name, not the property",
			resources:   []Resource{res("n5")},
			policy:      PolicyLocalOnly,
			wantSegs:    []Segment{host("n5")},
			wantDiskful: []string{"n5"}},
		{name: "zone policy yields one segment per distinct zone",
			resources:   []Resource{res("n1"), res("n2"), res("n3")},
			policy:      zonePolicy,
			wantSegs:    []Segment{zone("a"), zone("b")},
			wantDiskful: []string{"n1", "n2", "n3"}},
		{name: "zone policy with a node lacking the zone is anywhere",
			resources:    []Resource{res("n1"), res("n4")},
			policy:       zonePolicy,
			wantAnywhere: true,
			wantDiskful:  []string{"n1", "n4"}},
		{name: "anywhere policy is anywhere",
			resources:    []Resource{res("n1")},
			policy:       PolicyAnywhere,
			wantAnywhere: true,
			wantDiskful:  []string{"n1"}},
		{name: "region and zone rules yield both per node",
			resources:   []Resource{res("n1"), res("n2")},
			policy:      Policy{{FromSame: []string{fxRegion}}, {FromSame: []string{fxZoneKey}}},
			wantSegs:    []Segment{seg(fxRegion + "=r1"), zone("a"), zone("b")},
			wantDiskful: []string{"n1", "n2"}},
		{name: "rule over zone and hostname keeps both keys",
			resources:   []Resource{res("n1")},
			policy:      Policy{{FromSame: []string{fxZoneKey, HostnameKey}}},
			wantSegs:    []Segment{seg(fxZoneKey+"=a", HostnameKey+"=n1")},
			wantDiskful: []string{"n1"}},
		{name: "unknown node is reported and has only its hostname",
			resources:   []Resource{res("n9"), res("n1")},
			policy:      PolicyLocalOnly,
			wantSegs:    []Segment{host("n1"), host("n9")},
			wantDiskful: []string{"n1", "n9"},
			wantUnknown: []string{"n9"}},
		{name: "two resources on one node count once",
			resources:   []Resource{res("n1"), res("n1")},
			policy:      PolicyLocalOnly,
			wantSegs:    []Segment{host("n1")},
			wantDiskful: []string{"n1"}},
		{name: "no diskful resource: no segments, not anywhere",
			resources: []Resource{res("n1", "DISKLESS")},
			policy:    PolicyAnywhere},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := AccessibleTopology(tc.resources, nodes, tc.policy)
			if got.Anywhere != tc.wantAnywhere {
				t.Errorf("Anywhere = %v, want %v", got.Anywhere, tc.wantAnywhere)
			}
			if tc.wantAnywhere && len(got.Segments) != 0 {
				t.Errorf("anywhere topology carries segments %v", segSet(got.Segments))
			}
			if !sameSegmentSet(got.Segments, tc.wantSegs) {
				t.Errorf("Segments = %v, want %v", segSet(got.Segments), segSet(tc.wantSegs))
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
	nodes := map[string]Segment{"n1": {fxZoneKey: "a"}}
	AccessibleTopology([]Resource{res("n1")}, nodes, PolicyLocalOnly)
	if len(nodes["n1"]) != 1 || nodes["n1"][fxZoneKey] != "a" {
		t.Errorf("AccessibleTopology changed the node map: %v", nodes)
	}
}

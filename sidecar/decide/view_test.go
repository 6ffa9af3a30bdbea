package decide_test

import (
	"sort"
	"testing"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
)

// savedJSON is a minimal saved state for PV name with volume handle handle.
func savedJSON(name, handle string) string {
	return `{"kind":"PersistentVolume","apiVersion":"v1","metadata":{"name":"` + name +
		`"},"spec":{"csi":{"driver":"` + fixture.Driver + `","volumeHandle":"` + handle + `"}}}`
}

func TestViewSavedStates(t *testing.T) {
	type want struct {
		ref    decide.VolumeRef
		legacy bool
	}
	cases := []struct {
		name    string
		rds     []*decide.RDView
		wantPV  map[string]want
		wantBad []want
	}{
		{name: "state on a volume definition",
			rds:    []*decide.RDView{{Name: "rd", Volumes: map[int]string{0: "", 1: savedJSON("pv-b", "rd/1")}}},
			wantPV: map[string]want{"pv-b": {ref: decide.VolumeRef{RD: "rd", Volume: 1}}}},
		{name: "state on the legacy resource definition location",
			rds:    []*decide.RDView{{Name: "rd", LegacySaved: savedJSON("pv-a", "rd"), Volumes: map[int]string{0: ""}}},
			wantPV: map[string]want{"pv-a": {ref: decide.VolumeRef{RD: "rd"}, legacy: true}}},
		{name: "states of several resource definitions",
			rds: []*decide.RDView{
				{Name: "rd1", Volumes: map[int]string{0: savedJSON("pv-1", "rd1")}},
				{Name: "rd2", LegacySaved: savedJSON("pv-2", "rd2")},
			},
			wantPV: map[string]want{
				"pv-1": {ref: decide.VolumeRef{RD: "rd1"}},
				"pv-2": {ref: decide.VolumeRef{RD: "rd2"}, legacy: true},
			}},
		{name: "volume definition wins over legacy on the same RD",
			rds: []*decide.RDView{{Name: "rd", LegacySaved: savedJSON("pv-a", "rd"),
				Volumes: map[int]string{0: savedJSON("pv-a", "rd")}}},
			wantPV:  map[string]want{"pv-a": {ref: decide.VolumeRef{RD: "rd"}}},
			wantBad: []want{{ref: decide.VolumeRef{RD: "rd"}, legacy: true}}},
		{name: "volume definition wins over legacy seen first on another RD",
			rds: []*decide.RDView{
				{Name: "a-rd", LegacySaved: savedJSON("pv-a", "a-rd")},
				{Name: "b-rd", Volumes: map[int]string{0: savedJSON("pv-a", "b-rd")}},
			},
			wantPV:  map[string]want{"pv-a": {ref: decide.VolumeRef{RD: "b-rd"}}},
			wantBad: []want{{ref: decide.VolumeRef{RD: "a-rd"}, legacy: true}}},
		{name: "volume definition wins over legacy seen later on another RD",
			rds: []*decide.RDView{
				{Name: "a-rd", Volumes: map[int]string{0: savedJSON("pv-a", "a-rd")}},
				{Name: "b-rd", LegacySaved: savedJSON("pv-a", "b-rd")},
			},
			wantPV:  map[string]want{"pv-a": {ref: decide.VolumeRef{RD: "a-rd"}}},
			wantBad: []want{{ref: decide.VolumeRef{RD: "b-rd"}, legacy: true}}},
		{name: "undecodable state is reported in bad",
			rds: []*decide.RDView{
				{Name: "rd", Volumes: map[int]string{0: "not json", 1: savedJSON("pv-b", "rd/1")}},
				{Name: "rd2", LegacySaved: `{"metadata":{"name":"x"}}`},
			},
			wantPV:  map[string]want{"pv-b": {ref: decide.VolumeRef{RD: "rd", Volume: 1}}},
			wantBad: []want{{ref: decide.VolumeRef{RD: "rd"}}, {ref: decide.VolumeRef{RD: "rd2"}, legacy: true}}},
		{name: "empty properties are no state",
			rds:    []*decide.RDView{{Name: "rd", Volumes: map[int]string{0: "", 1: ""}}},
			wantPV: map[string]want{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := &decide.View{RDs: map[string]*decide.RDView{}}
			for _, rd := range tc.rds {
				v.RDs[rd.Name] = rd
			}
			byPV, bad := v.SavedStates()
			if len(byPV) != len(tc.wantPV) {
				t.Errorf("got states for %d PVs, want %d", len(byPV), len(tc.wantPV))
			}
			for name, w := range tc.wantPV {
				s := byPV[name]
				if s == nil {
					t.Errorf("no state for %s", name)
					continue
				}
				if s.Ref != w.ref || s.Legacy != w.legacy || s.Err != nil || s.Name() != name {
					t.Errorf("state of %s = ref %v legacy %v err %v name %q, want ref %v legacy %v",
						name, s.Ref, s.Legacy, s.Err, s.Name(), w.ref, w.legacy)
				}
			}
			var gotBad []want
			for _, s := range bad {
				if s.Err == nil {
					t.Errorf("bad state on %s has no error", s.Location())
				}
				gotBad = append(gotBad, want{ref: s.Ref, legacy: s.Legacy})
			}
			byLocation := func(w []want) func(i, j int) bool {
				return func(i, j int) bool { return w[i].ref.String() < w[j].ref.String() }
			}
			sort.Slice(gotBad, byLocation(gotBad))
			if len(gotBad) != len(tc.wantBad) {
				t.Fatalf("bad = %v, want %v", gotBad, tc.wantBad)
			}
			for i := range gotBad {
				if gotBad[i] != tc.wantBad[i] {
					t.Errorf("bad = %v, want %v", gotBad, tc.wantBad)
					break
				}
			}
		})
	}
}

func TestSavedStateLocation(t *testing.T) {
	cases := []struct {
		name  string
		state decide.SavedState
		want  string
	}{
		{"volume definition names the volume", decide.SavedState{Ref: decide.VolumeRef{RD: "rd", Volume: 2}}, "volume-definition rd/2"},
		{"legacy names the resource definition", decide.SavedState{Ref: decide.VolumeRef{RD: "rd"}, Legacy: true}, "resource-definition rd"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.state.Location(); got != tc.want {
				t.Errorf("Location() = %q, want %q", got, tc.want)
			}
		})
	}
	var nilState *decide.SavedState
	if nilState.Name() != "" || (&decide.SavedState{}).Name() != "" {
		t.Errorf("Name() of an absent or undecoded state is not empty")
	}
}

package decide

import (
	"fmt"
	"sort"
	"time"
)

// View is what LINSTOR said in one cycle, read in bulk (nodes, resource
// definitions with volume definitions, one resource view) and trimmed to what
// decisions need, so memory stays small with tens of thousands of volumes.
type View struct {
	// Nodes maps every LINSTOR node to its topology segments.
	Nodes map[string]Segment
	// RDs maps resource definition names to what the sidecar needs of them.
	RDs map[string]*RDView
	// FetchedAt is when the read began; decisions never use older data.
	FetchedAt time.Time
	// Unchanged is set when nothing decisions read changed since the
	// previous read: the same nodes with the same topology properties, the
	// same resource and volume definitions with the same skip and
	// saved-state properties, the same replicas on the same nodes counting
	// as diskful or not. Everything else LINSTOR reports (allocated sizes,
	// DRBD states, timestamps, flags that do not change what counts) may
	// have changed: the view is then the previous read's, whose fields
	// decisions do not read may lag.
	Unchanged bool
}

// RDView is a resource definition as decisions see it.
type RDView struct {
	Name string
	// Skip is the value of Aux/affinity-updater-skip.
	Skip string
	// LegacySaved is saved state kept on the resource definition itself.
	LegacySaved string
	// Volumes maps each volume definition number to its saved state ("" if none);
	// presence in the map means the volume definition exists.
	Volumes map[int]string
	// Resources are the RD's resources, one per node.
	Resources []Resource
}

// SavedStates lists every saved state in the view, decoded, keyed by the PV
// name it belongs to. States that cannot be decoded are returned separately,
// since they name no PV. When a PV has state in both places, the volume
// definition's wins and the legacy one is reported as a duplicate in bad.
func (v *View) SavedStates() (byPV map[string]*SavedState, bad []*SavedState) {
	byPV = map[string]*SavedState{}
	names := make([]string, 0, len(v.RDs))
	for name := range v.RDs {
		names = append(names, name)
	}
	sort.Strings(names)
	add := func(s *SavedState, raw string) {
		s.Raw = raw
		s.PV, s.Err = DecodeSavedPV(raw)
		if s.Err != nil {
			bad = append(bad, s)
			return
		}
		prev, dup := byPV[s.PV.Name]
		switch {
		case !dup:
			byPV[s.PV.Name] = s
		case prev.Legacy && !s.Legacy:
			byPV[s.PV.Name] = s
			prev.Err = fmt.Errorf("pv %s also has saved state on %s, which wins", s.PV.Name, s.Location())
			bad = append(bad, prev)
		default:
			s.Err = fmt.Errorf("pv %s also has saved state on %s, which wins", s.PV.Name, prev.Location())
			bad = append(bad, s)
		}
	}
	for _, name := range names {
		rd := v.RDs[name]
		vols := make([]int, 0, len(rd.Volumes))
		for n, raw := range rd.Volumes {
			if raw != "" {
				vols = append(vols, n)
			}
		}
		sort.Ints(vols)
		for _, n := range vols {
			add(&SavedState{Ref: VolumeRef{RD: name, Volume: n}}, rd.Volumes[n])
		}
		if rd.LegacySaved != "" {
			add(&SavedState{Ref: VolumeRef{RD: name}, Legacy: true}, rd.LegacySaved)
		}
	}
	return byPV, bad
}

// WithFresher is v with the resource definitions (and, if it read them, the
// nodes) of a fresher partial read put in: deciding again on v after a PV
// change must not undo a repair made on the fresher data. The time of the
// read stays v's: the other resource definitions are as old as that.
func (v *View) WithFresher(part *View) *View {
	out := *v
	out.RDs = make(map[string]*RDView, len(v.RDs))
	for name, rd := range v.RDs {
		out.RDs[name] = rd
	}
	for name, rd := range part.RDs {
		out.RDs[name] = rd
	}
	if part.Nodes != nil {
		out.Nodes = part.Nodes
	}
	return &out
}

package decide

import (
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
)

// DecideAll decides about every PV of the driver and every saved state in the
// view, in name order, leaving out PVs of other drivers. It also returns how
// many PVs the driver has. sc looks up the StorageClass a PV names.
//
// PVs that share a volume (static PVs with one volume handle) share the
// volume definition's saved-state slot: at most one of them is replaced per
// cycle, the first by name, and none while the slot holds another PV's state.
func DecideAll(pvs []*corev1.PersistentVolume, sc func(*corev1.PersistentVolume) *storagev1.StorageClass, view *View, cfg Config, now time.Time) ([]Action, int) {
	saved, bad := view.SavedStates()
	slots := slotsOf(saved, bad)
	out := make([]Action, 0, len(pvs)+len(saved)+len(bad))
	seen := make(map[string]bool, len(pvs))
	decide := func(in Input) {
		a := Decide(in, cfg)
		if a.Reason != ReasonForeignDriver && a.Reason != ReasonNotCSI {
			out = append(out, a)
		}
	}
	for _, pv := range pvs {
		if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != cfg.DriverName {
			continue
		}
		seen[pv.Name] = true
		in := Input{PV: pv, Saved: saved[pv.Name], Nodes: view.Nodes, Now: now, StorageClass: sc(pv)}
		if ref, err := ParseVolumeHandle(pv.Spec.CSI.VolumeHandle); err == nil {
			in.RD = view.RDs[ref.RD]
			in.Slot = slots[ref]
		}
		decide(in)
	}
	for name, s := range saved {
		if !seen[name] {
			decide(Input{Saved: s, Nodes: view.Nodes, Now: now})
		}
	}
	for _, s := range bad {
		decide(Input{Saved: s, Nodes: view.Nodes, Now: now})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	oneReplacePerVolume(out)
	return out, len(seen)
}

// slotsOf maps each volume definition whose saved-state slot is in use to
// what it holds. State kept on a resource definition (legacy) takes no
// volume definition's slot: a replace never writes there.
func slotsOf(saved map[string]*SavedState, bad []*SavedState) map[VolumeRef]Slot {
	slots := make(map[VolumeRef]Slot, len(saved)+len(bad))
	for _, s := range saved {
		if !s.Legacy {
			slots[s.Ref] = Slot{Owner: s.PV.Name}
		}
	}
	for _, s := range bad {
		switch {
		case s.Legacy:
		case s.PV == nil:
			slots[s.Ref] = Slot{Unreadable: s.Err}
		default:
			slots[s.Ref] = Slot{Owner: s.PV.Name}
		}
	}
	return slots
}

// oneReplacePerVolume holds every replace of a volume but the first (in the
// order of actions) for a later cycle: two replaces on one saved-state slot
// must never overlap.
func oneReplacePerVolume(actions []Action) {
	first := map[VolumeRef]string{}
	for i, a := range actions {
		if a.Kind != KindReplace {
			continue
		}
		owner, taken := first[a.Ref]
		if !taken {
			first[a.Ref] = a.Name
			continue
		}
		held := a
		held.Kind, held.Reason, held.Warn, held.Affinity = KindNone, ReasonDuplicateHandle, true, nil
		held.Message = fmt.Sprintf("waits: PV %s shares volume %s and is repaired first; PVs that share a volume are repaired one after the other", owner, a.Ref)
		actions[i] = held
	}
}

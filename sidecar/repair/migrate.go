package repair

import (
	"context"
	"fmt"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"k8s.io/klog/v2"
)

// MigrateResult counts what MigrateProperties did.
type MigrateResult struct {
	Moved, AlreadyMigrated, Conflicts, Invalid int
}

// MigrateProperties moves saved state that older upstream versions kept on the
// resource definition to the volume definition of the volume it belongs to,
// where this sidecar and current upstream versions look first. It is
// idempotent and never drops state it cannot place: undecodable state, state
// for a volume definition that does not exist, and state that differs from
// what the volume definition already holds are left where they are and
// counted.
func MigrateProperties(ctx context.Context, view *decide.View, store StateStore) (MigrateResult, error) {
	var res MigrateResult
	for name, rd := range view.RDs {
		if rd.LegacySaved == "" {
			continue
		}
		legacy := &decide.SavedState{Ref: decide.VolumeRef{RD: name}, Legacy: true}
		pv, err := decide.DecodeSavedPV(rd.LegacySaved)
		if err != nil {
			res.Invalid++
			klog.InfoS("Leaving undecodable saved state in place", "resourceDefinition", name, "err", err)
			continue
		}
		ref, err := decide.ParseVolumeHandle(pv.Spec.CSI.VolumeHandle)
		if err != nil || ref.RD != name {
			res.Invalid++
			klog.InfoS("Leaving saved state whose volume handle does not name this resource definition", "resourceDefinition", name, "handle", pv.Spec.CSI.VolumeHandle)
			continue
		}
		current, hasVD := rd.Volumes[ref.Volume]
		switch {
		case !hasVD:
			res.Invalid++
			klog.InfoS("Leaving saved state for a volume definition that does not exist", "resourceDefinition", name, "volume", ref.Volume)
			continue
		case current == rd.LegacySaved:
			res.AlreadyMigrated++
		case current != "":
			res.Conflicts++
			klog.InfoS("Volume definition holds different saved state; leaving both for a person to look at", "pv", pv.Name, "volumeDefinition", ref.String())
			continue
		default:
			if err := store.SaveState(ctx, ref, rd.LegacySaved); err != nil {
				return res, fmt.Errorf("pv %s: copy saved state to volume-definition %s: %w", pv.Name, ref, err)
			}
			res.Moved++
		}
		if err := store.ClearState(ctx, legacy); err != nil {
			return res, fmt.Errorf("pv %s: remove saved state from resource-definition %s: %w", pv.Name, name, err)
		}
		klog.InfoS("Moved saved state to the volume definition", "pv", pv.Name, "volumeDefinition", ref.String())
	}
	return res, nil
}

package decide

import (
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
)

// Kind is what the sidecar will do about one PV.
type Kind string

const (
	// KindNone: leave the PV as it is; Reason says why.
	KindNone Kind = "none"
	// KindReplace: rewrite the PV with Affinity.
	KindReplace Kind = "replace"
	// KindRecreate: a replace was interrupted after the old PV was deleted (or
	// while it was being deleted); create the PV again from the saved state.
	KindRecreate Kind = "recreate-from-saved-state"
	// KindClearSaved: the PV is alive and well, so the saved state is stale;
	// undo the replace's preparation on the live PV if any, then clear it.
	KindClearSaved Kind = "clear-saved-state"
)

// Reason is a short, stable word for why a decision was taken; it labels
// metrics, Events and log lines.
type Reason string

const (
	ReasonInSync             Reason = "in-sync"
	ReasonDrifted            Reason = "drifted"
	ReasonNotCSI             Reason = "not-csi"
	ReasonForeignDriver      Reason = "foreign-driver"
	ReasonSkipAnnotation     Reason = "skip-annotation"
	ReasonSkipProperty       Reason = "skip-property"
	ReasonReleased           Reason = "released"
	ReasonTerminating        Reason = "terminating"
	ReasonGracePeriod        Reason = "grace-period"
	ReasonMalformedHandle    Reason = "malformed-handle"
	ReasonNoRD               Reason = "no-resource-definition"
	ReasonNoVD               Reason = "no-volume-definition"
	ReasonNoResources        Reason = "no-resources"
	ReasonNoDiskful          Reason = "no-diskful-replicas"
	ReasonUnknownNodes       Reason = "unknown-nodes"
	ReasonInvalidPolicy      Reason = "invalid-policy"
	ReasonMissingSC          Reason = "storage-class-missing"
	ReasonInvalidSavedState  Reason = "invalid-saved-state"
	ReasonInterruptedReplace Reason = "interrupted-replace"
	ReasonStaleSavedState    Reason = "stale-saved-state"
	ReasonNoStorageClass     Reason = "no-storage-class"
	ReasonDuplicateHandle    Reason = "duplicate-handle"
)

// Config holds what decisions depend on besides the objects themselves.
type Config struct {
	// DriverName is the CSI driver this sidecar serves (from GetPluginInfo).
	DriverName string
	// GracePeriod leaves PVs younger than this alone; 0 disables it.
	GracePeriod time.Duration
	// DefaultPolicy is LINSTOR CSI's --default-remote-access-policy.
	DefaultPolicy Policy
}

// Input is everything known about one PV (or one saved state without a PV).
type Input struct {
	// PV is the live PV from the informer cache; nil when there is none.
	PV *corev1.PersistentVolume
	// Saved is the saved state for this PV name, if any.
	Saved *SavedState
	// RD is LINSTOR's view of the PV's resource definition; nil when absent.
	RD *RDView
	// Nodes are LINSTOR's nodes with their topology segments.
	Nodes map[string]Segment
	// StorageClass is the one the PV names, nil when it names none or it is gone.
	StorageClass *storagev1.StorageClass
	// Slot is what the saved-state property of the PV's volume definition
	// holds when that is not this PV's own saved state: a replace writes
	// there, so it must not start while the slot is taken.
	Slot Slot
	Now  time.Time
}

// Slot describes a volume definition's saved-state property (the "slot" a
// replace parks its PV in) as seen by a PV that does not own it.
type Slot struct {
	// Owner is the PV whose saved state the slot holds ("" when none).
	Owner string
	// Unreadable is why the slot's text could not be read as a saved PV (nil
	// when it could, or when the slot is empty). Such text may be a PV
	// somebody still needs; it is never written over.
	Unreadable error
}

// Action is a decision: what to do about one PV and why.
type Action struct {
	Kind   Kind
	Reason Reason
	// Message explains the decision to a person.
	Message string
	// Warn marks decisions an operator should look at (a warning Event).
	Warn bool
	// PV is the live PV (nil for a recreate of a missing PV).
	PV *corev1.PersistentVolume
	// Name is the PV name the action concerns.
	Name string
	// Ref is the LINSTOR volume, when known.
	Ref VolumeRef
	// Affinity is the new node affinity, for KindReplace.
	Affinity *corev1.VolumeNodeAffinity
	// Topology is the computed accessible topology, when it was computed.
	Topology *Topology
	// Policy and PolicySource, when resolved.
	Policy       Policy
	PolicySource PolicySource
	// Saved is the saved state the action works from or clears.
	Saved *SavedState
}

func none(in Input, reason Reason, format string, args ...any) Action {
	return Action{Kind: KindNone, Reason: reason, Message: fmt.Sprintf(format, args...), PV: in.PV, Name: inputName(in)}
}

func warn(in Input, reason Reason, format string, args ...any) Action {
	a := none(in, reason, format, args...)
	a.Warn = true
	return a
}

func inputName(in Input) string {
	if in.PV != nil {
		return in.PV.Name
	}
	return in.Saved.Name()
}

// Decide is the one place that says when a PV gets rewritten. It is pure: the
// same input always gives the same action, and it touches nothing.
//
// Saved state comes first, because it is the sidecar's own unfinished work and
// must be finished or undone whatever else holds: a PV is never left missing.
// Then the skips, in the upstream controller's order, then the comparison of the
// PV's affinity with the topology LINSTOR reports.
func Decide(in Input, cfg Config) Action {
	if in.Saved != nil {
		return decideSaved(in, cfg)
	}
	pv := in.PV
	if pv.Spec.CSI == nil {
		return none(in, ReasonNotCSI, "not a CSI volume")
	}
	if pv.Spec.CSI.Driver != cfg.DriverName {
		return none(in, ReasonForeignDriver, "belongs to driver %q", pv.Spec.CSI.Driver)
	}
	if v := pv.Annotations[SkipAnnotation]; v != "" {
		return none(in, ReasonSkipAnnotation, "annotation %s=%q", SkipAnnotation, v)
	}
	if pv.Status.Phase == corev1.VolumeReleased {
		return none(in, ReasonReleased, "released by its claim")
	}
	if pv.DeletionTimestamp != nil {
		return none(in, ReasonTerminating, "being deleted")
	}
	if cfg.GracePeriod > 0 {
		if age := in.Now.Sub(pv.CreationTimestamp.Time); age < cfg.GracePeriod {
			return none(in, ReasonGracePeriod, "created %s ago, grace period %s", age.Round(time.Second), cfg.GracePeriod)
		}
	}
	ref, err := ParseVolumeHandle(pv.Spec.CSI.VolumeHandle)
	if err != nil {
		return warn(in, ReasonMalformedHandle, "%v", err)
	}
	rd := in.RD
	if rd == nil {
		a := none(in, ReasonNoRD, "LINSTOR has no resource definition %s", ref.RD)
		a.Ref = ref
		return a
	}
	decision := decideTopology(in, cfg, ref, rd)
	decision.Ref = ref
	if decision.Kind == KindReplace {
		return holdForSlot(in, decision)
	}
	return decision
}

// holdForSlot keeps a replace from starting while its volume definition's
// saved-state slot holds something other than nothing: another PV's saved
// state (two PVs with one volume handle take turns, so one's save never
// overwrites the other's and one's clear never deletes the other's) or text
// that is not a saved PV at all (it is left for a person to look at).
func holdForSlot(in Input, a Action) Action {
	loc := "volume-definition " + a.Ref.String()
	switch {
	case in.Slot.Unreadable != nil:
		held := warn(in, ReasonInvalidSavedState,
			"not repairing: %s holds a saved state that cannot be read (%v); it may be a PV someone still needs, so it is never written over. "+
				"Look at it with `linstor volume-definition list-properties %s %d`, keep a copy if it is a PV, then remove it with "+
				"`linstor volume-definition set-property %s %d %s` (no value)",
			loc, in.Slot.Unreadable, a.Ref.RD, a.Ref.Volume, a.Ref.RD, a.Ref.Volume, SavedPVKey)
		held.Ref = a.Ref
		return held
	case in.Slot.Owner != "" && in.Slot.Owner != a.Name:
		held := warn(in, ReasonDuplicateHandle,
			"waits: PV %s shares volume %s and its replace is under way (saved state on %s); PVs that share a volume are repaired one after the other",
			in.Slot.Owner, a.Ref, loc)
		held.Ref = a.Ref
		return held
	}
	return a
}

func decideTopology(in Input, cfg Config, ref VolumeRef, rd *RDView) Action {
	pv := in.PV
	if rd.Skip != "" {
		return none(in, ReasonSkipProperty, "resource definition property %s=%q", SkipRDKey, rd.Skip)
	}
	if len(rd.Resources) == 0 {
		return none(in, ReasonNoResources, "resource definition %s has no resources", ref.RD)
	}
	if _, ok := rd.Volumes[ref.Volume]; !ok {
		return none(in, ReasonNoVD, "resource definition %s has no volume %d", ref.RD, ref.Volume)
	}
	policy, source, err := ResolvePolicy(pv, in.StorageClass, cfg.DefaultPolicy)
	if errors.Is(err, ErrNoStorageClass) {
		return warn(in, ReasonNoStorageClass, "not repairing: %v", err)
	}
	if errors.Is(err, ErrStorageClassMissing) {
		return warn(in, ReasonMissingSC, "cannot tell the remote access policy: %v", err)
	}
	if err != nil {
		return warn(in, ReasonInvalidPolicy, "invalid remote access policy from %s: %v", source, err)
	}
	topo := AccessibleTopology(rd.Resources, in.Nodes, policy)
	decided := func(a Action) Action {
		a.Topology, a.Policy, a.PolicySource = &topo, policy, source
		return a
	}
	if len(topo.Diskful) == 0 {
		return decided(none(in, ReasonNoDiskful, "resource definition %s has no healthy diskful replica", ref.RD))
	}
	// A replica on a node LINSTOR does not list has no topology to speak of; a
	// policy rule on keys that node lacks would come out empty and widen the
	// PV to "anywhere". LINSTOR CSI leaves such nodes out; the sidecar waits.
	if len(topo.UnknownNodes) > 0 {
		return decided(warn(in, ReasonUnknownNodes, "diskful nodes of %s missing from LINSTOR's node list: %s",
			ref.RD, strings.Join(topo.UnknownNodes, ", ")))
	}
	if AffinityMatches(pv.Spec.NodeAffinity, topo) {
		return decided(none(in, ReasonInSync, "affinity matches replicas on %s", strings.Join(topo.Diskful, ", ")))
	}
	affinity := AffinityFor(topo)
	return decided(Action{
		Kind:   KindReplace,
		Reason: ReasonDrifted,
		Message: fmt.Sprintf("affinity %s does not match replicas on %s (policy %s from %s); want %s",
			DescribeAffinity(pv.Spec.NodeAffinity), strings.Join(topo.Diskful, ", "), policy, source, DescribeAffinity(affinity)),
		PV:       pv,
		Name:     pv.Name,
		Affinity: affinity,
	})
}

// decideSaved settles a replace that an earlier run (of this sidecar or of the
// upstream controller) left unfinished.
func decideSaved(in Input, cfg Config) Action {
	s := in.Saved
	if s.Err != nil {
		a := warn(in, ReasonInvalidSavedState, "saved state on %s left in place, cannot use it: %v", s.Location(), s.Err)
		a.Saved, a.Ref = s, s.Ref
		return a
	}
	if s.PV.Spec.CSI.Driver != cfg.DriverName {
		a := none(in, ReasonForeignDriver, "saved state on %s belongs to driver %q", s.Location(), s.PV.Spec.CSI.Driver)
		a.Saved, a.Ref = s, s.Ref
		return a
	}
	pv := in.PV
	if pv == nil || pv.DeletionTimestamp != nil {
		state := "missing"
		if pv != nil {
			state = "being deleted"
		}
		return Action{
			Kind: KindRecreate, Reason: ReasonInterruptedReplace, PV: pv, Name: s.PV.Name, Ref: s.Ref, Saved: s,
			Affinity: s.PV.Spec.NodeAffinity,
			Message:  fmt.Sprintf("PV is %s and %s holds its replacement: recreating it", state, s.Location()),
		}
	}
	return Action{
		Kind: KindClearSaved, Reason: ReasonStaleSavedState, PV: pv, Name: pv.Name, Ref: s.Ref, Saved: s,
		Message: fmt.Sprintf("PV exists, so the saved state on %s is no longer needed", s.Location()),
	}
}

package decide

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// LINSTOR property keys shared with the upstream linstor-affinity-controller, so
// a cluster can switch between the two at any moment, even in the middle of a
// replace.
const (
	// SavedPVKey holds, on the volume definition (legacy: the resource
	// definition), the JSON of the PV being recreated until it exists again.
	SavedPVKey = "Aux/affinity-updater-saved-pv"
	// SkipRDKey on a resource definition, when non-empty, exempts its volumes.
	SkipRDKey = "Aux/affinity-updater-skip"
	// SkipAnnotation on a PV, when non-empty, exempts it.
	SkipAnnotation = "piraeus.io/skip-affinity-controller"
)

// SavedState is a replacement PV parked in LINSTOR while a replace is under way.
type SavedState struct {
	// Ref is the volume whose property holds the state.
	Ref VolumeRef
	// Legacy: the state sits on the resource definition, as older upstream
	// versions wrote it, rather than on the volume definition.
	Legacy bool
	// PV is the decoded replacement; nil when Err is set.
	PV *corev1.PersistentVolume
	// Err says why the property could not be read as a PV.
	Err error
	// Raw is the property's text as read. The state is only ever cleared
	// while LINSTOR still holds exactly this text, so a clear never removes
	// a state someone else wrote meanwhile.
	Raw string
}

// Name is the PV the state belongs to, or "" when it could not be decoded.
func (s *SavedState) Name() string {
	if s == nil || s.PV == nil {
		return ""
	}
	return s.PV.Name
}

// Location describes where the state is kept, for logs.
func (s *SavedState) Location() string {
	if s.Legacy {
		return "resource-definition " + s.Ref.RD
	}
	return "volume-definition " + s.Ref.String()
}

// DecodeSavedPV reads the saved-state property. It accepts what the upstream
// controller writes (a PersistentVolume or its apply configuration, which share
// their JSON form) and refuses anything that could not be recreated as a PV of a
// CSI volume: unknown kind, no name, no CSI source or volume handle.
func DecodeSavedPV(text string) (*corev1.PersistentVolume, error) {
	var pv corev1.PersistentVolume
	if err := json.Unmarshal([]byte(text), &pv); err != nil {
		return nil, fmt.Errorf("saved PV is not valid JSON: %w", err)
	}
	if pv.Kind != "" && pv.Kind != "PersistentVolume" {
		return nil, fmt.Errorf("saved PV has kind %q", pv.Kind)
	}
	if pv.APIVersion != "" && pv.APIVersion != "v1" {
		return nil, fmt.Errorf("saved PV has apiVersion %q", pv.APIVersion)
	}
	if pv.Name == "" {
		return nil, fmt.Errorf("saved PV has no name")
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.VolumeHandle == "" || pv.Spec.CSI.Driver == "" {
		return nil, fmt.Errorf("saved PV %s has no CSI driver or volume handle", pv.Name)
	}
	return &pv, nil
}

// EncodeSavedPV writes a replacement PV (see Replacement) in the saved-state
// form, with kind and apiVersion set like an apply configuration.
func EncodeSavedPV(pv *corev1.PersistentVolume) (string, error) {
	out := pv.DeepCopy()
	out.Kind, out.APIVersion = "PersistentVolume", "v1"
	out.Status = corev1.PersistentVolumeStatus{}
	b, err := json.Marshal(out)
	if err != nil {
		return "", fmt.Errorf("pv %s: encode saved state: %w", pv.Name, err)
	}
	return string(b), nil
}

// Replacement builds the PV that takes old's place: the same name, labels,
// annotations, finalizers, owner references and the whole spec (claimRef, CSI
// source, capacity, access and volume modes, storage class, reclaim policy, mount
// options...) with only the node affinity changed. Server-set metadata (UID,
// resourceVersion, timestamps, managed fields) and the status are left out.
func Replacement(old *corev1.PersistentVolume, affinity *corev1.VolumeNodeAffinity) *corev1.PersistentVolume {
	pv := &corev1.PersistentVolume{}
	pv.Name = old.Name
	pv.Labels = copyMap(old.Labels)
	pv.Annotations = copyMap(old.Annotations)
	pv.Finalizers = append([]string(nil), old.Finalizers...)
	pv.OwnerReferences = append(pv.OwnerReferences, old.OwnerReferences...)
	pv.Spec = *old.Spec.DeepCopy()
	pv.Spec.NodeAffinity = affinity.DeepCopy()
	delete(pv.Annotations, RetainedFromAnnotation)
	if ref := pv.Spec.ClaimRef; ref != nil {
		ref.ResourceVersion = ""
	}
	return pv
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// RetainedFromAnnotation is set by the replace's retain step, next to
// Retain and skip-reclaim, to the reclaim policy the PV had before. It marks
// Retain as the sidecar's own doing, so undoing an interrupted replace puts
// back exactly the policy of before, even on a PV that already carried
// skip-reclaim (set by a user, or left by an old upstream version).
const RetainedFromAnnotation = "linstor-affinity-sidecar.piraeus.io/reclaim-policy-before-replace"

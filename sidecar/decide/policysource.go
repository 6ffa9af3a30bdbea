package decide

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
)

// Keys through which a volume's remote access policy reaches LINSTOR CSI.
const (
	// OverrideAnnotationPrefix starts PV annotations that override the policy.
	OverrideAnnotationPrefix = "override.piraeus.io"
	// ParameterPrefix is LINSTOR CSI's StorageClass parameter namespace.
	ParameterPrefix = "linstor.csi.linbit.com/"
	// VolumeContextMarker on a PV's volume attributes says the driver stored the
	// StorageClass parameters it used there (LINSTOR CSI >= 0.17).
	VolumeContextMarker = ParameterPrefix + "uses-volume-context"
	// VolumeContextPolicyKey holds the policy among the volume attributes.
	VolumeContextPolicyKey = ParameterPrefix + "remote-access-policy"

	paramAllowRemoteAccess = "allowremotevolumeaccess"
	paramLayerList         = "layerlist"
	defaultLayerList       = "drbd storage"
)

// PolicySource says where a volume's policy came from, for logs and reports.
type PolicySource string

const (
	SourceAnnotation    PolicySource = "annotation"
	SourceVolumeContext PolicySource = "volume-context"
	SourceStorageClass  PolicySource = "storage-class"
	SourceDefault       PolicySource = "default"
)

// ErrStorageClassMissing means the PV names a StorageClass the cluster no longer
// has, and nothing on the PV itself says the policy. Guessing the default there
// could silently widen or narrow a volume's affinity, so such PVs are left alone.
var ErrStorageClassMissing = errors.New("storage class not found")

// ErrNoStorageClass means the PV names no StorageClass and carries no policy
// itself (override annotation, volume context). Such PVs are static, often
// pinned by hand; LINSTOR CSI's default policy says nothing about them, and
// applying it could widen a local-only volume to "anywhere". The upstream
// controller skips them too.
var ErrNoStorageClass = errors.New("the PV names no StorageClass and carries no remote access policy (override.piraeus.io annotation or volume context)")

// ResolvePolicy finds a PV's remote access policy the way LINSTOR CSI chose it at
// provisioning time, first match wins: an override.piraeus.io annotation, the
// volume context, the StorageClass parameter, then the default derived from the
// StorageClass layer list. sc is the StorageClass the PV names (nil if none or
// unknown); defaultPolicy is LINSTOR CSI's --default-remote-access-policy.
func ResolvePolicy(pv *corev1.PersistentVolume, sc *storagev1.StorageClass, defaultPolicy Policy) (Policy, PolicySource, error) {
	if key, text, ok := overrideAnnotation(pv.Annotations); ok {
		p, err := ParsePolicy(text)
		if err != nil {
			return nil, SourceAnnotation, fmt.Errorf("annotation %s: %w", key, err)
		}
		return p, SourceAnnotation, nil
	}
	if csi := pv.Spec.CSI; csi != nil {
		if _, marked := csi.VolumeAttributes[VolumeContextMarker]; marked {
			if text, ok := csi.VolumeAttributes[VolumeContextPolicyKey]; ok && strings.TrimSpace(text) != "" {
				p, err := ParsePolicy(text)
				if err != nil {
					return nil, SourceVolumeContext, fmt.Errorf("volume attribute %s: %w", VolumeContextPolicyKey, err)
				}
				return p, SourceVolumeContext, nil
			}
		}
	}
	if pv.Spec.StorageClassName == "" {
		return nil, SourceDefault, ErrNoStorageClass
	}
	if sc == nil {
		return nil, SourceStorageClass, fmt.Errorf("storage class %q: %w", pv.Spec.StorageClassName, ErrStorageClassMissing)
	}
	params := sc.Parameters
	if key, text, ok := storageClassParameter(params, paramAllowRemoteAccess); ok {
		p, err := ParsePolicy(text)
		if err != nil {
			return nil, SourceStorageClass, fmt.Errorf("storage class %q parameter %s: %w", pv.Spec.StorageClassName, key, err)
		}
		return p, SourceStorageClass, nil
	}
	layers := defaultLayerList
	if _, text, ok := storageClassParameter(params, paramLayerList); ok {
		layers = text
	}
	if layerListReplicates(layers) {
		return clonePolicy(defaultPolicy), SourceDefault, nil
	}
	return clonePolicy(PolicyLocalOnly), SourceDefault, nil
}

// overrideAnnotation picks the override annotation with the smallest key, so the
// choice is stable when a PV carries several.
func overrideAnnotation(annotations map[string]string) (key, value string, ok bool) {
	for k, v := range annotations {
		if strings.HasPrefix(k, OverrideAnnotationPrefix) && (!ok || k < key) {
			key, value, ok = k, v, true
		}
	}
	return key, value, ok
}

// storageClassParameter finds a LINSTOR CSI parameter by its lower-case name,
// written with or without the linstor.csi.linbit.com/ prefix, in any case. When
// both spellings are present the prefixed one wins, then the smallest key.
func storageClassParameter(params map[string]string, name string) (key, value string, ok bool) {
	var candidates []string
	for k := range params {
		ns, raw, hasNS := strings.Cut(k, "/")
		if !hasNS {
			ns, raw = "", k
		}
		if (ns == "" || ns+"/" == ParameterPrefix) && strings.ToLower(raw) == name {
			candidates = append(candidates, k)
		}
	}
	if len(candidates) == 0 {
		return "", "", false
	}
	sort.Slice(candidates, func(i, j int) bool {
		pi, pj := strings.HasPrefix(candidates[i], ParameterPrefix), strings.HasPrefix(candidates[j], ParameterPrefix)
		if pi != pj {
			return pi
		}
		return candidates[i] < candidates[j]
	})
	return candidates[0], params[candidates[0]], true
}

// layerListReplicates reports whether the layer list has a layer (DRBD, NVMe-oF)
// that lets a node without a replica reach the data over the network.
func layerListReplicates(layers string) bool {
	for _, l := range strings.Fields(strings.ToLower(layers)) {
		if l == "drbd" || l == "nvme" {
			return true
		}
	}
	return false
}

package sidecar

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The informer cache holds every PV of the cluster for the life of the
// process, and at tens of thousands of PVs it is most of the sidecar's heap.
// A PV as the API client decodes it carries slack (maps and slices sized by
// the decoder's growth, not by their content) and its own copy of strings
// that thousands of PVs share (driver name, StorageClass, node names, keys of
// node selectors, finalizers). CompactObject keeps the same content in less
// memory: it drops managedFields (which nothing here reads), deep-copies the
// object into exactly sized allocations, and points low-cardinality strings
// at one shared copy. The cached object is equal to what the API server sent
// but for managedFields.

// Interning is bounded so a cluster with unusual, unique values (say, an
// annotation carrying a timestamp) cannot grow the table without end: only
// short strings are interned, and once the table is full new strings are
// kept as they are.
const (
	internMaxLen     = 64
	internMaxEntries = 8192
)

// interner shares one copy of each short string it has seen.
type interner struct {
	mu sync.Mutex
	m  map[string]string
}

var sharedStrings = &interner{m: map[string]string{}}

func (in *interner) str(s string) string {
	if s == "" || len(s) > internMaxLen {
		return s
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if c, ok := in.m[s]; ok {
		return c
	}
	if len(in.m) < internMaxEntries {
		in.m[s] = s
	}
	return s
}

func (in *interner) strs(ss []string) {
	for i := range ss {
		ss[i] = in.str(ss[i])
	}
}

// stringMap returns m with interned keys and values, or m itself when nil.
func (in *interner) stringMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[in.str(k)] = in.str(v)
	}
	return out
}

// CompactObject is an informer transform (cache.TransformFunc) for PVs and
// StorageClasses; other objects only lose their managedFields.
func CompactObject(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.PersistentVolume:
		return compactPV(o), nil
	case *storagev1.StorageClass:
		c := o.DeepCopy()
		c.ManagedFields = nil
		return c, nil
	case metav1.Object:
		o.SetManagedFields(nil)
	}
	return obj, nil
}

func compactPV(pv *corev1.PersistentVolume) *corev1.PersistentVolume {
	in := sharedStrings
	managed := pv.ManagedFields
	pv.ManagedFields = nil
	c := pv.DeepCopy()
	pv.ManagedFields = managed

	c.Labels = in.stringMap(c.Labels)
	c.Annotations = in.stringMap(c.Annotations)
	in.strs(c.Finalizers)
	s := &c.Spec
	s.StorageClassName = in.str(s.StorageClassName)
	s.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimPolicy(in.str(string(s.PersistentVolumeReclaimPolicy)))
	for i := range s.AccessModes {
		s.AccessModes[i] = corev1.PersistentVolumeAccessMode(in.str(string(s.AccessModes[i])))
	}
	in.strs(s.MountOptions)
	if s.ClaimRef != nil {
		s.ClaimRef.Kind = in.str(s.ClaimRef.Kind)
		s.ClaimRef.APIVersion = in.str(s.ClaimRef.APIVersion)
		s.ClaimRef.Namespace = in.str(s.ClaimRef.Namespace)
	}
	if csi := s.CSI; csi != nil {
		csi.Driver = in.str(csi.Driver)
		csi.FSType = in.str(csi.FSType)
		csi.VolumeAttributes = in.stringMap(csi.VolumeAttributes)
	}
	if a := s.NodeAffinity; a != nil && a.Required != nil {
		for i := range a.Required.NodeSelectorTerms {
			t := &a.Required.NodeSelectorTerms[i]
			internRequirements(in, t.MatchExpressions)
			internRequirements(in, t.MatchFields)
		}
	}
	c.Status.Phase = corev1.PersistentVolumePhase(in.str(string(c.Status.Phase)))
	return c
}

func internRequirements(in *interner, rs []corev1.NodeSelectorRequirement) {
	for i := range rs {
		rs[i].Key = in.str(rs[i].Key)
		rs[i].Operator = corev1.NodeSelectorOperator(in.str(string(rs[i].Operator)))
		in.strs(rs[i].Values)
	}
}

package sidecar

import (
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Fixtures for the decision tests. Every helper builds objects by hand, never
// through the code under test, so a test compares against an independent
// expectation.

const (
	fxDriver  = "linstor.csi.linbit.com"
	fxZoneKey = "topology.kubernetes.io/zone"
	fxRegion  = "topology.kubernetes.io/region"
)

// fxNow is the fixed "now" of every decision test.
var fxNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

type pvOpt func(*corev1.PersistentVolume)

// mkPV builds a bound LINSTOR CSI PV created an hour before fxNow, with no
// node affinity and no StorageClass.
func mkPV(name, handle string, opts ...pvOpt) *corev1.PersistentVolume {
	fs := corev1.PersistentVolumeFilesystem
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:              name,
			UID:               types.UID("uid-" + name),
			ResourceVersion:   "42",
			CreationTimestamp: metav1.NewTime(fxNow.Add(-time.Hour)),
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver:       fxDriver,
				VolumeHandle: handle,
			}},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			VolumeMode:                    &fs,
		},
		Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeBound},
	}
	for _, o := range opts {
		o(pv)
	}
	return pv
}

func withAffinity(a *corev1.VolumeNodeAffinity) pvOpt {
	return func(pv *corev1.PersistentVolume) { pv.Spec.NodeAffinity = a }
}

func withAnnotation(key, value string) pvOpt {
	return func(pv *corev1.PersistentVolume) {
		if pv.Annotations == nil {
			pv.Annotations = map[string]string{}
		}
		pv.Annotations[key] = value
	}
}

func withSC(name string) pvOpt {
	return func(pv *corev1.PersistentVolume) { pv.Spec.StorageClassName = name }
}

func withVolumeAttributes(attrs map[string]string) pvOpt {
	return func(pv *corev1.PersistentVolume) { pv.Spec.CSI.VolumeAttributes = attrs }
}

func withDriver(driver string) pvOpt {
	return func(pv *corev1.PersistentVolume) { pv.Spec.CSI.Driver = driver }
}

func withPhase(phase corev1.PersistentVolumePhase) pvOpt {
	return func(pv *corev1.PersistentVolume) { pv.Status.Phase = phase }
}

func withCreated(t time.Time) pvOpt {
	return func(pv *corev1.PersistentVolume) { pv.CreationTimestamp = metav1.NewTime(t) }
}

func withDeleting() pvOpt {
	return func(pv *corev1.PersistentVolume) {
		ts := metav1.NewTime(fxNow.Add(-time.Minute))
		pv.DeletionTimestamp = &ts
		pv.Finalizers = []string{"kubernetes.io/pv-protection"}
	}
}

func withoutCSI() pvOpt {
	return func(pv *corev1.PersistentVolume) {
		pv.Spec.PersistentVolumeSource = corev1.PersistentVolumeSource{
			HostPath: &corev1.HostPathVolumeSource{Path: "/data"},
		}
	}
}

// seg builds a segment from "key=value" pairs.
func seg(pairs ...string) Segment {
	s := Segment{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			panic("seg: want key=value, got " + p)
		}
		s[k] = v
	}
	return s
}

func host(node string) Segment { return Segment{HostnameKey: node} }

func zone(z string) Segment { return Segment{fxZoneKey: z} }

// term builds a selector term the way the external-provisioner writes one
// segment: one "key In [value]" expression per key, keys in the given order.
func term(pairs ...string) corev1.NodeSelectorTerm {
	var t corev1.NodeSelectorTerm
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			panic("term: want key=value, got " + p)
		}
		t.MatchExpressions = append(t.MatchExpressions, corev1.NodeSelectorRequirement{
			Key: k, Operator: corev1.NodeSelectorOpIn, Values: []string{v},
		})
	}
	return t
}

// affinity wraps terms in a required node affinity.
func affinity(terms ...corev1.NodeSelectorTerm) *corev1.VolumeNodeAffinity {
	return &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: terms}}
}

// affinityOf renders segments as terms, keys sorted, independently of AffinityFor.
func affinityOf(segs ...Segment) *corev1.VolumeNodeAffinity {
	terms := make([]corev1.NodeSelectorTerm, 0, len(segs))
	for _, s := range segs {
		terms = append(terms, term(segPairs(s)...))
	}
	return affinity(terms...)
}

// segPairs lists a segment as sorted "key=value" pairs.
func segPairs(s Segment) []string {
	out := make([]string, 0, len(s))
	for k, v := range s {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// segString is a canonical text form of a segment, for set comparison and messages.
func segString(s Segment) string { return "{" + strings.Join(segPairs(s), ",") + "}" }

// segSet is the sorted, de-duplicated canonical forms of segments.
func segSet(segs []Segment) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range segs {
		k := segString(s)
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// sameSegmentSet compares two segment lists as sets.
func sameSegmentSet(a, b []Segment) bool {
	x, y := segSet(a), segSet(b)
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// affinitySegments reads an affinity written in segment form back as segments,
// for comparing a computed affinity as a set; ok is false when a term is not
// in that form.
func affinitySegments(a *corev1.VolumeNodeAffinity) (segs []Segment, ok bool) {
	if a == nil || a.Required == nil {
		return nil, true
	}
	for _, t := range a.Required.NodeSelectorTerms {
		if len(t.MatchFields) != 0 {
			return nil, false
		}
		s := Segment{}
		for _, e := range t.MatchExpressions {
			if e.Operator != corev1.NodeSelectorOpIn || len(e.Values) != 1 {
				return nil, false
			}
			s[e.Key] = e.Values[0]
		}
		segs = append(segs, s)
	}
	return segs, true
}

// res is a diskful-unless-flagged resource of resource definition "rd".
func res(node string, flags ...string) Resource {
	return Resource{Name: "rd", Node: node, Flags: flags}
}

// mkSC builds a LINSTOR CSI StorageClass with the given parameters.
func mkSC(name string, params map[string]string) *storagev1.StorageClass {
	return &storagev1.StorageClass{
		ObjectMeta:  metav1.ObjectMeta{Name: name},
		Provisioner: fxDriver,
		Parameters:  params,
	}
}

// mkRD builds an RD view with volume definitions 0..vols-1 and no saved state.
func mkRD(name string, vols int, resources ...Resource) *RDView {
	rd := &RDView{Name: name, Volumes: map[int]string{}, Resources: resources}
	for i := 0; i < vols; i++ {
		rd.Volumes[i] = ""
	}
	for i := range rd.Resources {
		rd.Resources[i].Name = name
	}
	return rd
}

// planned is what the loop would carry out on view: plan's actions, the
// pvs metric updated and skips logged as in a cycle.
func planned(r *Reconciler, view *View) ([]Action, error) {
	actions, _, _, err := r.plan(view)
	return actions, err
}

package sidecar

import (
	"fmt"
	"strings"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

func compactTestPV(name, node string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, UID: types.UID("uid-" + name), ResourceVersion: "42",
			Labels:        map[string]string{"app": "db"},
			Annotations:   map[string]string{"pv.kubernetes.io/provisioned-by": fxDriver, "note": strings.Repeat("n", 100)},
			Finalizers:    []string{"kubernetes.io/pv-protection"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "csi-provisioner", Operation: metav1.ManagedFieldsOperationUpdate}},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              "strict",
			MountOptions:                  []string{"noatime"},
			VolumeMode:                    ptr.To(corev1.PersistentVolumeFilesystem),
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{
				{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "linbit.com/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}}},
			}}},
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: "default", Name: "data-" + name, UID: "claim-uid"},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: fxDriver, VolumeHandle: name, FSType: "ext4",
				VolumeAttributes: map[string]string{"storage.kubernetes.io/csiProvisionerIdentity": "1-2-3"},
			}},
		},
		Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeBound},
	}
}

// fresh returns a copy of s in its own memory, as a decoder would make it.
func fresh(s string) string { return string([]byte(s)) }

func sameMemory(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }

func TestCompactObjectKeepsThePVButItsManagedFields(t *testing.T) {
	pv := compactTestPV("pv-a", "n1")
	orig := pv.DeepCopy()
	out, err := CompactObject(pv)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.PersistentVolume)
	if got.ManagedFields != nil {
		t.Errorf("managedFields kept: %v", got.ManagedFields)
	}
	want := orig.DeepCopy()
	want.ManagedFields = nil
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("compacted PV differs:\n got %+v\nwant %+v", got, want)
	}
	if !equality.Semantic.DeepEqual(pv, orig) {
		t.Errorf("CompactObject changed its input")
	}
}

func TestCompactObjectSharesRepeatedStrings(t *testing.T) {
	// Two PVs decoded separately: equal strings in separate memory.
	a := compactTestPV("pv-a", fresh("n1"))
	b := compactTestPV("pv-b", fresh("n1"))
	b.Spec.StorageClassName = fresh("strict")
	b.Spec.CSI.Driver = fresh(fxDriver)
	ca, _ := CompactObject(a)
	cb, _ := CompactObject(b)
	pa, pb := ca.(*corev1.PersistentVolume), cb.(*corev1.PersistentVolume)
	pairs := []struct {
		what string
		a, b string
	}{
		{"storage class", pa.Spec.StorageClassName, pb.Spec.StorageClassName},
		{"driver", pa.Spec.CSI.Driver, pb.Spec.CSI.Driver},
		{"node selector value", pa.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values[0],
			pb.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values[0]},
		{"finalizer", pa.Finalizers[0], pb.Finalizers[0]},
	}
	for _, p := range pairs {
		if p.a != p.b {
			t.Fatalf("%s: %q != %q", p.what, p.a, p.b)
		}
		if !sameMemory(p.a, p.b) {
			t.Errorf("%s %q is held twice", p.what, p.a)
		}
	}
	// Long and unique values are left as they are.
	if !sameMemory(pa.Annotations["note"], pa.Annotations["note"]) || len(pa.Annotations["note"]) != 100 {
		t.Errorf("long annotation value changed")
	}
}

func TestInternerIsBounded(t *testing.T) {
	in := &interner{m: map[string]string{}}
	for i := range internMaxEntries + 100 {
		in.str(fmt.Sprintf("value-%d", i))
	}
	if len(in.m) != internMaxEntries {
		t.Errorf("interner holds %d strings, bound %d", len(in.m), internMaxEntries)
	}
	long := strings.Repeat("x", internMaxLen+1)
	if got := in.str(long); got != long {
		t.Errorf("long string changed")
	}
	// A string beyond the bound still comes back equal.
	if got := in.str("beyond-the-bound"); got != "beyond-the-bound" {
		t.Errorf("got %q", got)
	}
}

func TestCompactObjectStorageClassAndOthers(t *testing.T) {
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "strict", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Provisioner: fxDriver, Parameters: map[string]string{"linstor.csi.linbit.com/allowRemoteVolumeAccess": "false"}}
	out, _ := CompactObject(sc)
	got := out.(*storagev1.StorageClass)
	if got.ManagedFields != nil || got.Parameters["linstor.csi.linbit.com/allowRemoteVolumeAccess"] != "false" || got.Provisioner != fxDriver {
		t.Errorf("compacted StorageClass %+v", got)
	}
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "c", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}}
	out, _ = CompactObject(pvc)
	if out.(*corev1.PersistentVolumeClaim).ManagedFields != nil {
		t.Errorf("managedFields kept on a claim")
	}
	if out, err := CompactObject("not an object"); err != nil || out != "not an object" {
		t.Errorf("non-object: %v %v", out, err)
	}
}

package decide_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// upstreamSavedPV is what the upstream controller writes to the property: the
// JSON of a PersistentVolume apply configuration, with kind and apiVersion and
// explicit empty strings where it set pointer fields from an empty value.
const upstreamSavedPV = `{"kind":"PersistentVolume","apiVersion":"v1",` +
	`"metadata":{"name":"pvc-1","labels":{"app":"db"},` +
	`"annotations":{"pv.kubernetes.io/provisioned-by":"linstor.csi.linbit.com"},"finalizers":["kubernetes.io/pv-protection"]},` +
	`"spec":{"capacity":{"storage":"1Gi"},` +
	`"csi":{"driver":"linstor.csi.linbit.com","volumeHandle":"pvc-1/1","readOnly":false,"fsType":"ext4",` +
	`"volumeAttributes":{"linstor.csi.linbit.com/uses-volume-context":"true"}},` +
	`"accessModes":["ReadWriteOnce"],` +
	`"claimRef":{"kind":"PersistentVolumeClaim","namespace":"default","name":"data","uid":"c-1","apiVersion":"v1","resourceVersion":"","fieldPath":""},` +
	`"persistentVolumeReclaimPolicy":"Delete","storageClassName":"linstor","volumeMode":"Filesystem",` +
	`"nodeAffinity":{"required":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"linbit.com/hostname","operator":"In","values":["n1"]}]}]}}}}`

func TestDecodeSavedPVAcceptsUpstreamApplyConfiguration(t *testing.T) {
	pv, err := decide.DecodeSavedPV(upstreamSavedPV)
	if err != nil {
		t.Fatalf("DecodeSavedPV: %v", err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"name", pv.Name, "pvc-1"},
		{"label", pv.Labels["app"], "db"},
		{"finalizers", len(pv.Finalizers), 1},
		{"driver", pv.Spec.CSI.Driver, fixture.Driver},
		{"volume handle", pv.Spec.CSI.VolumeHandle, "pvc-1/1"},
		{"volume context", pv.Spec.CSI.VolumeAttributes[decide.VolumeContextMarker], "true"},
		{"claim name", pv.Spec.ClaimRef.Name, "data"},
		{"claim uid", string(pv.Spec.ClaimRef.UID), "c-1"},
		{"storage class", pv.Spec.StorageClassName, "linstor"},
		{"reclaim policy", pv.Spec.PersistentVolumeReclaimPolicy, corev1.PersistentVolumeReclaimDelete},
		{"capacity", pv.Spec.Capacity.Storage().String(), "1Gi"},
		{"affinity", decide.DescribeAffinity(pv.Spec.NodeAffinity), "[{linbit.com/hostname=n1}]"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestDecodeSavedPV(t *testing.T) {
	cases := []struct {
		name    string
		text    string
		wantErr string
	}{
		{"plain PV JSON without type meta",
			`{"metadata":{"name":"pv"},"spec":{"csi":{"driver":"d","volumeHandle":"rd"}}}`, ""},
		{"apply configuration with type meta",
			`{"kind":"PersistentVolume","apiVersion":"v1","metadata":{"name":"pv"},"spec":{"csi":{"driver":"d","volumeHandle":"rd"}}}`, ""},
		{"unknown fields are tolerated",
			`{"metadata":{"name":"pv","future":1},"spec":{"csi":{"driver":"d","volumeHandle":"rd"}}}`, ""},
		{"invalid JSON", `{"metadata":`, "JSON"},
		{"empty text", ``, "JSON"},
		{"YAML is not JSON", "metadata:\n  name: pv\n", "JSON"},
		{"wrong kind",
			`{"kind":"PersistentVolumeClaim","apiVersion":"v1","metadata":{"name":"pv"},"spec":{"csi":{"driver":"d","volumeHandle":"rd"}}}`, "kind"},
		{"wrong apiVersion",
			`{"kind":"PersistentVolume","apiVersion":"v2","metadata":{"name":"pv"},"spec":{"csi":{"driver":"d","volumeHandle":"rd"}}}`, "apiVersion"},
		{"no name", `{"spec":{"csi":{"driver":"d","volumeHandle":"rd"}}}`, "name"},
		{"no CSI source", `{"metadata":{"name":"pv"},"spec":{"hostPath":{"path":"/x"}}}`, "CSI"},
		{"CSI without volume handle", `{"metadata":{"name":"pv"},"spec":{"csi":{"driver":"d"}}}`, "CSI"},
		{"CSI without driver", `{"metadata":{"name":"pv"},"spec":{"csi":{"volumeHandle":"rd"}}}`, "CSI"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pv, err := decide.DecodeSavedPV(tc.text)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("DecodeSavedPV: unexpected error %v", err)
				}
				if pv.Name != "pv" || pv.Spec.CSI.VolumeHandle != "rd" {
					t.Errorf("decoded %s with handle %s, want pv with handle rd", pv.Name, pv.Spec.CSI.VolumeHandle)
				}
				return
			}
			if err == nil {
				t.Fatalf("DecodeSavedPV = %+v, want an error about %s", pv, tc.wantErr)
			}
			if pv != nil {
				t.Errorf("DecodeSavedPV returned a PV with its error")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestReplacementChangesOnlyTheAffinity(t *testing.T) {
	old := fixture.FullPV()
	want := fixture.AffinityOf(fixture.Host("n1"), fixture.Host("n2"))
	got := decide.Replacement(old, want)

	meta := []struct {
		what      string
		got, want any
	}{
		{"name", got.Name, old.Name},
		{"uid", string(got.UID), ""},
		{"resourceVersion", got.ResourceVersion, ""},
		{"creationTimestamp", got.CreationTimestamp.IsZero(), true},
		{"generation", got.Generation, int64(0)},
		{"managedFields", len(got.ManagedFields), 0},
		{"status phase", got.Status.Phase, corev1.PersistentVolumePhase("")},
		{"claimRef uid", got.Spec.ClaimRef.UID, old.Spec.ClaimRef.UID},
		{"claimRef resourceVersion", got.Spec.ClaimRef.ResourceVersion, ""},
		{"volume mode", *got.Spec.VolumeMode, corev1.PersistentVolumeBlock},
		{"reclaim policy", got.Spec.PersistentVolumeReclaimPolicy, corev1.PersistentVolumeReclaimRetain},
		{"storage class", got.Spec.StorageClassName, "linstor"},
	}
	for _, c := range meta {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	for what, pair := range map[string][2]any{
		"labels":          {got.Labels, old.Labels},
		"annotations":     {got.Annotations, old.Annotations},
		"finalizers":      {got.Finalizers, old.Finalizers},
		"ownerReferences": {got.OwnerReferences, old.OwnerReferences},
		"affinity":        {got.Spec.NodeAffinity, want},
	} {
		if !equality.Semantic.DeepEqual(pair[0], pair[1]) {
			t.Errorf("%s = %v, want %v", what, pair[0], pair[1])
		}
	}

	// The whole spec, apart from the affinity and the claim's resourceVersion,
	// is the old one: CSI source, capacity, access modes, mount options...
	wantSpec := old.Spec.DeepCopy()
	wantSpec.NodeAffinity = want
	wantSpec.ClaimRef.ResourceVersion = ""
	if !equality.Semantic.DeepEqual(got.Spec, *wantSpec) {
		t.Errorf("spec = %+v\nwant %+v", got.Spec, *wantSpec)
	}
}

func TestReplacementSharesNothingWithItsInputs(t *testing.T) {
	old := fixture.FullPV()
	aff := fixture.AffinityOf(fixture.Host("n1"))
	got := decide.Replacement(old, aff)

	got.Labels["app"] = "changed"
	got.Annotations["new"] = "x"
	got.Finalizers[0] = "changed"
	got.Spec.CSI.VolumeAttributes["new"] = "x"
	got.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values[0] = "changed"

	if old.Labels["app"] != "db" || old.Annotations["new"] != "" || old.Finalizers[0] != "kubernetes.io/pv-protection" ||
		old.Spec.CSI.VolumeAttributes["new"] != "" {
		t.Errorf("changing the replacement changed the old PV: %+v", old.ObjectMeta)
	}
	if old.Spec.ClaimRef.ResourceVersion != "777" {
		t.Errorf("Replacement cleared the old PV's claimRef resourceVersion")
	}
	if aff.Required.NodeSelectorTerms[0].MatchExpressions[0].Values[0] != "n1" {
		t.Errorf("changing the replacement changed the affinity it was given")
	}
}

func TestReplacementWithAnywhereHasNoAffinity(t *testing.T) {
	got := decide.Replacement(fixture.FullPV(), nil)
	if got.Spec.NodeAffinity != nil {
		t.Errorf("affinity = %s, want none", decide.DescribeAffinity(got.Spec.NodeAffinity))
	}
}

func TestSavedPVRoundTrip(t *testing.T) {
	old := fixture.FullPV()
	replacement := decide.Replacement(old, fixture.AffinityOf(fixture.Host("n1"), fixture.Host("n2")))
	text, err := decide.EncodeSavedPV(replacement)
	if err != nil {
		t.Fatalf("EncodeSavedPV: %v", err)
	}

	var typeMeta struct{ Kind, APIVersion string }
	if err := json.Unmarshal([]byte(text), &typeMeta); err != nil {
		t.Fatalf("saved state is not JSON: %v", err)
	}
	if typeMeta.Kind != "PersistentVolume" || typeMeta.APIVersion != "v1" {
		t.Errorf("saved state has kind %q apiVersion %q, want PersistentVolume v1", typeMeta.Kind, typeMeta.APIVersion)
	}
	if replacement.Kind != "" || replacement.APIVersion != "" {
		t.Errorf("EncodeSavedPV set type meta on its input")
	}

	back, err := decide.DecodeSavedPV(text)
	if err != nil {
		t.Fatalf("DecodeSavedPV(EncodeSavedPV(pv)): %v", err)
	}
	want := replacement.DeepCopy()
	want.Kind, want.APIVersion = "PersistentVolume", "v1"
	if !equality.Semantic.DeepEqual(back, want) {
		t.Errorf("round trip changed the PV:\n got %+v\nwant %+v", back, want)
	}
}

func TestEncodeSavedPVDropsStatus(t *testing.T) {
	pv := fixture.FullPV()
	pv.Status = corev1.PersistentVolumeStatus{Phase: corev1.VolumeBound, Message: "bound"}
	text, err := decide.EncodeSavedPV(pv)
	if err != nil {
		t.Fatal(err)
	}
	back, err := decide.DecodeSavedPV(text)
	if err != nil {
		t.Fatal(err)
	}
	if back.Status.Phase != "" || back.Status.Message != "" {
		t.Errorf("saved state kept the status %+v", back.Status)
	}
	if pv.Status.Phase != corev1.VolumeBound {
		t.Errorf("EncodeSavedPV cleared the status of its input")
	}
}

package kubecache

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/randfill"
)

// compactOf states, field by field and independently of the decoder, what
// a compact PV keeps of full.
func compactOf(full *corev1.PersistentVolume) *corev1.PersistentVolume {
	pv := &corev1.PersistentVolume{}
	pv.Name, pv.UID, pv.ResourceVersion = full.Name, full.UID, full.ResourceVersion
	pv.CreationTimestamp, pv.DeletionTimestamp = full.CreationTimestamp, full.DeletionTimestamp
	pv.Labels = full.Labels
	for k, v := range full.Annotations {
		if k == decide.SkipAnnotation || strings.HasPrefix(k, decide.OverrideAnnotationPrefix) || k == decide.RetainedFromAnnotation || strings.HasSuffix(k, "/skip-reclaim") {
			if pv.Annotations == nil {
				pv.Annotations = map[string]string{}
			}
			pv.Annotations[k] = v
		}
	}
	if csi := full.Spec.CSI; csi != nil {
		pv.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: csi.Driver, VolumeHandle: csi.VolumeHandle}
		for _, k := range []string{decide.VolumeContextMarker, decide.VolumeContextPolicyKey} {
			if v, ok := csi.VolumeAttributes[k]; ok {
				if pv.Spec.CSI.VolumeAttributes == nil {
					pv.Spec.CSI.VolumeAttributes = map[string]string{}
				}
				pv.Spec.CSI.VolumeAttributes[k] = v
			}
		}
	}
	pv.Spec.NodeAffinity = full.Spec.NodeAffinity
	pv.Spec.StorageClassName = full.Spec.StorageClassName
	if ref := full.Spec.ClaimRef; ref != nil {
		pv.Spec.ClaimRef = &corev1.ObjectReference{Namespace: ref.Namespace, Name: ref.Name, UID: ref.UID}
	}
	pv.Spec.PersistentVolumeReclaimPolicy = full.Spec.PersistentVolumeReclaimPolicy
	pv.Status.Phase = full.Status.Phase
	return pv
}

// decodeCompact decodes one PV's JSON compact.
func decodeCompact(t testing.TB, data []byte) *corev1.PersistentVolume {
	t.Helper()
	pv, err := decodeOne(data)
	if err != nil {
		t.Fatalf("compact decode: %v\n%s", err, data)
	}
	return pv
}

// compactCopy is what the PV cache holds for pv (Compact).
func compactCopy(t testing.TB, pv *corev1.PersistentVolume) *corev1.PersistentVolume {
	t.Helper()
	c, err := Compact(pv)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// assertCompactOf checks that data decodes compact to exactly the kept
// fields of its full decoding.
func assertCompactOf(t testing.TB, data []byte) {
	t.Helper()
	var full corev1.PersistentVolume
	if err := json.Unmarshal(data, &full); err != nil {
		t.Fatalf("full decode: %v", err)
	}
	got, want := decodeCompact(t, data), compactOf(&full)
	if !equality.Semantic.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Fatalf("compact PV differs from the kept fields of\n%s\ngot  %s\nwant %s", data, g, w)
	}
}

func TestCompactPVHoldsExactlyTheKeptFields(t *testing.T) {
	full := fixture.FullPV()
	full.Annotations[decide.SkipAnnotation] = "yes"
	full.Annotations[decide.RetainedFromAnnotation] = "Delete"
	full.Annotations[fixture.Driver+"/skip-reclaim"] = "true"
	full.DeletionTimestamp = ptr.To(metav1.NewTime(fixture.Now))
	data, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	assertCompactOf(t, data)
	pv := decodeCompact(t, data)
	// Spelled out once, so a change of the kept set is a visible change here.
	if len(pv.Annotations) != 4 || len(pv.Spec.CSI.VolumeAttributes) != 2 || pv.Spec.Capacity != nil ||
		pv.Spec.AccessModes != nil || pv.Spec.MountOptions != nil || pv.Spec.VolumeMode != nil || pv.Finalizers != nil ||
		pv.OwnerReferences != nil || pv.ManagedFields != nil || pv.Spec.CSI.NodeStageSecretRef != nil || pv.Spec.CSI.FSType != "" ||
		pv.Spec.ClaimRef.ResourceVersion != "" || pv.Spec.ClaimRef.Kind != "" || pv.Status.Message != "" || pv.Generation != 0 {
		t.Errorf("compact PV keeps more than it should: %+v", pv)
	}
	if pv.Labels["tier"] != "gold" || pv.Spec.NodeAffinity == nil || pv.Spec.ClaimRef.UID != full.Spec.ClaimRef.UID || pv.DeletionTimestamp == nil ||
		!pv.CreationTimestamp.Equal(&full.CreationTimestamp) || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		t.Errorf("compact PV lost a kept field: %+v", pv)
	}
}

// TestCompactPVDecidesLikeTheFullPV: the decision and the policy come out
// the same from the compact copy as from the full PV.
func TestCompactPVDecidesLikeTheFullPV(t *testing.T) {
	view := &decide.View{Nodes: map[string]decide.Segment{"n1": {decide.HostnameKey: "n1", fixture.ZoneKey: "z1"}, "n2": {decide.HostnameKey: "n2", fixture.ZoneKey: "z3"}},
		RDs: map[string]*decide.RDView{"pvc-1": fixture.RD("pvc-1", 2, fixture.Res("n1"), fixture.Res("n2"))}}
	cfg := decide.Config{DriverName: fixture.Driver, GracePeriod: time.Minute, DefaultPolicy: decide.PolicyAnywhere}
	variants := map[string]func(*corev1.PersistentVolume){
		"override annotation": func(*corev1.PersistentVolume) {},
		"volume context":      func(pv *corev1.PersistentVolume) { delete(pv.Annotations, decide.OverrideAnnotationPrefix+"/n1") },
		"skip annotation":     func(pv *corev1.PersistentVolume) { pv.Annotations[decide.SkipAnnotation] = "x" },
		"released":            func(pv *corev1.PersistentVolume) { pv.Status.Phase = corev1.VolumeReleased },
		"young":               func(pv *corev1.PersistentVolume) { pv.CreationTimestamp = metav1.NewTime(fixture.Now) },
		"no storage class": func(pv *corev1.PersistentVolume) {
			pv.Annotations, pv.Spec.CSI.VolumeAttributes, pv.Spec.StorageClassName = nil, nil, ""
		},
	}
	for name, edit := range variants {
		full := fixture.FullPV()
		edit(full)
		compact := compactCopy(t, full)
		sc := fixture.SC("linstor", map[string]string{"allowRemoteVolumeAccess": "false"})
		want := decide.Decide(decide.Input{PV: full, RD: view.RDs["pvc-1"], Nodes: view.Nodes, Now: fixture.Now, StorageClass: sc}, cfg)
		got := decide.Decide(decide.Input{PV: compact, RD: view.RDs["pvc-1"], Nodes: view.Nodes, Now: fixture.Now, StorageClass: sc}, cfg)
		if got.Kind != want.Kind || got.Reason != want.Reason || got.Message != want.Message || got.PolicySource != want.PolicySource {
			t.Errorf("%s: compact decides %s/%s (%s), full %s/%s (%s)", name, got.Kind, got.Reason, got.Message, want.Kind, want.Reason, want.Message)
		}
		if got.Kind == decide.KindReplace && decide.Fingerprint(got) != decide.Fingerprint(decide.Action{Kind: want.Kind, PV: compactOf(full), Affinity: want.Affinity}) {
			t.Errorf("%s: fingerprint of the compact copy differs", name)
		}
	}
}

// TestCompactPVOfRandomPVs: PVs with every field filled at random (odd
// strings, escapes, empty and missing values) decode compact to exactly
// their kept fields.
func TestCompactPVOfRandomPVs(t *testing.T) {
	for seed := int64(0); seed < 300; seed++ {
		f := randfill.NewWithSeed(seed).NilChance(0.3).NumElements(0, 3).MaxDepth(8)
		var pv corev1.PersistentVolume
		f.Fill(&pv)
		pv.ManagedFields = nil // FieldsV1 must hold JSON
		pv.Spec.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}
		r := rand.New(rand.NewSource(seed))
		if r.Intn(2) == 0 {
			if pv.Annotations == nil {
				pv.Annotations = map[string]string{}
			}
			pv.Annotations[decide.SkipAnnotation] = pv.Name
			pv.Annotations[decide.OverrideAnnotationPrefix+"/x"] = "\"quoted\"\n\u2028"
		}
		if r.Intn(2) == 0 && pv.Spec.CSI != nil {
			attrs := maps.Clone(pv.Spec.CSI.VolumeAttributes)
			if attrs == nil {
				attrs = map[string]string{}
			}
			attrs[decide.VolumeContextMarker], attrs[decide.VolumeContextPolicyKey] = "", "false"
			pv.Spec.CSI.VolumeAttributes = attrs
		}
		data, err := json.Marshal(&pv)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		assertCompactOf(t, data)
	}
}

// TestCompactPVOfRealPVs: PV JSON as a real API server sends it (in
// testdata/pv), LINSTOR CSI PVs and others, decodes compact to exactly its
// kept fields.
func TestCompactPVOfRealPVs(t *testing.T) {
	files, err := filepath.Glob("testdata/pv/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no PV JSON in testdata/pv: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(filepath.Base(file), func(t *testing.T) { assertCompactOf(t, data) })
	}
}

// FuzzCompactPV: any JSON a full decode accepts as a PV decodes compact to
// exactly its kept fields; the seeds are real PVs.
func FuzzCompactPV(f *testing.F) {
	files, _ := filepath.Glob("testdata/pv/*.json")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"metadata":{"annotations":{"piraeus.io/skip-affinity-controller":null,"a\u0062":"x"}},"spec":{"csi":null}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var full corev1.PersistentVolume
		if json.Unmarshal(data, &full) != nil {
			return
		}
		assertCompactOf(t, data)
	})
}

// FuzzDecodeStringMap: the filtering map decoder keeps exactly the entries
// encoding/json would decode, for the keys it is asked to keep.
func FuzzDecodeStringMap(f *testing.F) {
	for _, s := range []string{`null`, `{}`, ` { "a" : "b" , "override.piraeus.io/x":"y"} `, `{"override.piraeus.io\/x":"\u00e9\n"}`,
		`{"a":1}`, `{"piraeus.io/skip-affinity-controller":null}`, `{"a":"b",}`, `["a"]`, `"a"`, `{"x/skip-reclaim":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var all map[string]string
		wantErr := json.Unmarshal(data, &all) != nil
		got, err := decodeStringMap(data, keptAnnotation)
		if !json.Valid(data) {
			return // UnmarshalJSON only ever sees valid JSON
		}
		if (err != nil) != wantErr {
			t.Fatalf("%s: error %v, encoding/json's error: %v", data, err, wantErr)
		}
		if wantErr {
			return
		}
		want := map[string]string{}
		for k, v := range all {
			if keptAnnotation([]byte(k)) {
				want[k] = v
			}
		}
		if len(got) != len(want) || (len(want) > 0 && !maps.Equal(got, want)) {
			t.Fatalf("%s: kept %q, want %q", data, got, want)
		}
	})
}

// PVs that repeat a value share one copy of it: the kept volume attributes
// of a StorageClass, a node affinity, the driver name.
func TestCompactPVsShareRepeatedValues(t *testing.T) {
	a, b := fixture.FullPV(), fixture.FullPV()
	b.Name, b.UID, b.Spec.CSI.VolumeHandle = "pvc-2", "uid-pvc-2", "pvc-2"
	ca, cb := compactCopy(t, a), compactCopy(t, b)
	if reflect.ValueOf(ca.Spec.CSI.VolumeAttributes).Pointer() != reflect.ValueOf(cb.Spec.CSI.VolumeAttributes).Pointer() {
		t.Error("two PVs with the same volume attributes hold a map each")
	}
	if ca.Spec.NodeAffinity != cb.Spec.NodeAffinity {
		t.Error("two PVs with the same node affinity hold one each")
	}
	if unsafe.StringData(ca.Spec.CSI.Driver) != unsafe.StringData(cb.Spec.CSI.Driver) {
		t.Error("two PVs hold a copy of the driver name each")
	}
	b.Spec.NodeAffinity = fixture.AffinityOf(fixture.Host("elsewhere"))
	if cb = compactCopy(t, b); ca.Spec.NodeAffinity == cb.Spec.NodeAffinity || decide.DescribeAffinity(cb.Spec.NodeAffinity) != "[{linbit.com/hostname=elsewhere}]" {
		t.Errorf("a different affinity came out as %s", decide.DescribeAffinity(cb.Spec.NodeAffinity))
	}
}

// The shared tables stop growing at their bound: further values are
// decoded as they come, not kept.
func TestSharedValuesAreBounded(t *testing.T) {
	s := &sharedValues{strs: map[string]string{}, attrs: map[string]map[string]string{}, affinities: map[string]*corev1.VolumeNodeAffinity{}}
	for i := 0; i < maxSharedStrings+10; i++ {
		text := fmt.Sprintf("%q", fmt.Sprint("value-", i))
		if got, err := s.str([]byte(text)); err != nil || strconv.Quote(got) != text {
			t.Fatalf("%s came out as %q, %v", text, got, err)
		}
	}
	for i := 0; i < maxSharedAffinities+10; i++ {
		data, _ := json.Marshal(fixture.AffinityOf(fixture.Host(fmt.Sprint("n", i))))
		if got, err := s.affinity(data); err != nil || decide.DescribeAffinity(got) != fmt.Sprintf("[{linbit.com/hostname=n%d}]", i) {
			t.Fatalf("%s came out as %s, %v", data, decide.DescribeAffinity(got), err)
		}
	}
	if len(s.strs) != maxSharedStrings || len(s.affinities) != maxSharedAffinities {
		t.Errorf("tables hold %d strings and %d affinities, bounds %d and %d", len(s.strs), len(s.affinities), maxSharedStrings, maxSharedAffinities)
	}
	long := []byte(`"` + strings.Repeat("x", maxSharedText) + `"`)
	s2 := &sharedValues{strs: map[string]string{}}
	if _, err := s2.str(long); err != nil || len(s2.strs) != 0 {
		t.Errorf("a value longer than %d bytes was kept (%v)", maxSharedText, err)
	}
}

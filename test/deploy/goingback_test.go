package deploy

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/diff"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

// The patches that go back from the sidecar, as README "Going back to the
// operator's affinity controller" applies them (kubectl patch --type json
// --patch-file).
const (
	removeFile            = "linstorcluster-sidecar-remove.yaml"
	removeOldOperatorFile = "linstorcluster-sidecar-remove-old-operator.yaml"
)

// testGoingBack takes the sidecar out of LinstorClusters of one operator
// generation again, with the JSON patch the README gives: after the enable
// patch, and where the pod template lists another container before the
// sidecar (the position the JSON patch names must then be changed, and the
// unchanged file must change nothing).
func testGoingBack(ctx context.Context, t *testing.T, dyn dynamic.Interface, res schema.GroupVersionResource, hasField bool) {
	lcs := dyn.Resource(res)
	create := func(t *testing.T, name string, spec map[string]any) {
		t.Helper()
		lc := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": res.Group + "/v1", "kind": "LinstorCluster",
			"metadata": map[string]any{"name": name}, "spec": spec,
		}}
		if _, err := lcs.Create(ctx, lc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(t *testing.T, name string) *unstructured.Unstructured {
		t.Helper()
		lc, err := lcs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return lc
	}
	goBack := func(name string, patch []byte) (*unstructured.Unstructured, error) {
		return lcs.Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{})
	}
	// refused asserts that a go-back patch was refused as a whole. The API
	// server does not say which operation failed: a JSON patch that does not
	// apply is 422 with a fixed message, which kubectl prints as "The request
	// is invalid: the server rejected our request due to an error in our
	// request" (the README quotes it).
	refused := func(t *testing.T, name string, before *unstructured.Unstructured, err error) {
		t.Helper()
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "the server rejected our request") {
			t.Fatalf("want the patch refused as invalid, got %v", err)
		}
		if after := get(t, name); after.GetResourceVersion() != before.GetResourceVersion() {
			t.Errorf("a refused patch changed the LinstorCluster:\n%s", diff.Diff(before.Object["spec"], after.Object["spec"]))
		}
	}
	removeBytes := patchJSON(t, removeFile)
	if !hasField {
		removeBytes = patchJSON(t, removeOldOperatorFile)
	}

	t.Run("after the enable patch", func(t *testing.T) {
		name := "back-after-enable"
		spec := map[string]any{}
		if hasField {
			// A setting of the operator's own controller, which going
			// back must keep.
			spec["affinityController"] = map[string]any{"replicas": int64(2)}
		}
		create(t, name, spec)
		if _, err := lcs.Patch(ctx, name, types.MergePatchType, patchJSON(t, "linstorcluster-sidecar.yaml"), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		if !hasField {
			// The new operators' file refuses to run here, changing nothing.
			before := get(t, name)
			_, err := goBack(name, patchJSON(t, removeFile))
			refused(t, name, before, err)
		}
		got, err := goBack(name, removeBytes)
		if err != nil {
			t.Fatal(err)
		}
		checkWentBack(t, got, hasField, nil)
		if hasField {
			if replicas, _, _ := unstructured.NestedInt64(got.Object, "spec", "affinityController", "replicas"); replicas != 2 {
				t.Errorf("spec.affinityController.replicas = %d, want the 2 set before", replicas)
			}
		}
	})

	t.Run("another container before the sidecar", func(t *testing.T) {
		name := "back-second-container"
		// A user's own entry for linstor-csi, and the sidecar added to the
		// list by hand, as patches/README.md says to.
		own := map[string]any{"name": "linstor-csi", "resources": map[string]any{"requests": map[string]any{"memory": "1Gi"}}}
		spec := map[string]any{"csiController": map[string]any{"podTemplate": map[string]any{"spec": map[string]any{
			"containers": []any{own, sidecarContainer(t)},
		}}}}
		if hasField {
			spec["affinityController"] = map[string]any{"enabled": false}
		}
		create(t, name, spec)
		before := get(t, name)
		// The file as shipped names position 0, where linstor-csi is: the
		// test operation refuses it all.
		_, err := goBack(name, removeBytes)
		refused(t, name, before, err)

		// The README's way: the sidecar's position, then the file with
		// both 0s changed to it.
		i := containerIndex(t, before, sidecarName)
		file := removeFile
		if !hasField {
			file = removeOldOperatorFile
		}
		got, err := goBack(name, patchAtPosition(t, file, i))
		if err != nil {
			t.Fatal(err)
		}
		checkWentBack(t, got, hasField, []any{own})
	})

	t.Run("no strategic merge patch for a custom resource", func(t *testing.T) {
		// Why the README uses a guarded JSON patch: removing the container
		// by name ($patch: delete) needs a strategic merge patch, which the
		// API server takes for built-in types only.
		name := "back-strategic"
		create(t, name, map[string]any{})
		patch := []byte(`{"spec":{"csiController":{"podTemplate":{"spec":{"containers":[{"name":"` + sidecarName + `","$patch":"delete"}]}}}}}`)
		_, err := lcs.Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		if !apierrors.IsUnsupportedMediaType(err) {
			t.Errorf("strategic merge patch of a LinstorCluster: want 415 Unsupported Media Type, got %v", err)
		}
	})
}

// checkWentBack asserts that the LinstorCluster no longer adds the sidecar,
// keeps the other containers of its pod template (want), has the operator's
// affinity controller on again where the operator has one, and that the
// operator, merging the pod template into its Deployment, renders the
// Deployment as it would with want alone.
func checkWentBack(t *testing.T, lc *unstructured.Unstructured, hasField bool, want []any) {
	t.Helper()
	if addsSidecar(lc) {
		t.Errorf("the sidecar is still there: spec = %v", lc.Object["spec"])
	}
	containers, _, _ := unstructured.NestedSlice(lc.Object, "spec", "csiController", "podTemplate", "spec", "containers")
	if len(containers) != len(want) || (len(want) > 0 && !apiequality.Semantic.DeepEqual(containers, want)) {
		t.Errorf("containers left in the pod template: %v, want %v", containers, want)
	}
	enabled, found, _ := unstructured.NestedBool(lc.Object, "spec", "affinityController", "enabled")
	switch {
	case hasField && (!found || !enabled):
		t.Errorf("spec.affinityController.enabled = %v (set: %v), want true", enabled, found)
	case !hasField && found:
		t.Errorf("spec.affinityController stored by a CRD without it: %v", lc.Object["spec"])
	}

	tmpl, _, _ := unstructured.NestedMap(lc.Object, "spec", "csiController", "podTemplate")
	raw, err := json.Marshal(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	got := mergePodTemplate(t, "the LinstorCluster after going back", raw)
	wantDeploy := fixture(t)
	if len(want) > 0 {
		wantTmpl, err := json.Marshal(map[string]any{"spec": map[string]any{"containers": want}})
		if err != nil {
			t.Fatal(err)
		}
		wantDeploy = mergePodTemplate(t, "the other containers alone", wantTmpl)
	}
	if !apiequality.Semantic.DeepEqual(got, wantDeploy) {
		t.Errorf("the operator would render another Deployment than without the sidecar:\n%s", diff.Diff(wantDeploy, got))
	}
}

// sidecarContainer is the container linstorcluster-sidecar.yaml adds.
func sidecarContainer(t *testing.T) map[string]any {
	t.Helper()
	var lc map[string]any
	if err := json.Unmarshal(patchJSON(t, "linstorcluster-sidecar.yaml"), &lc); err != nil {
		t.Fatal(err)
	}
	containers, _, err := unstructured.NestedSlice(lc, "spec", "csiController", "podTemplate", "spec", "containers")
	if err != nil || len(containers) != 1 {
		t.Fatalf("linstorcluster-sidecar.yaml: want one container, got %d (%v)", len(containers), err)
	}
	return containers[0].(map[string]any)
}

// containerIndex is what the README's lookup prints: the position of the
// named container in the pod template, counted from 0.
func containerIndex(t *testing.T, lc *unstructured.Unstructured, name string) int {
	t.Helper()
	containers, _, _ := unstructured.NestedSlice(lc.Object, "spec", "csiController", "podTemplate", "spec", "containers")
	i := slices.IndexFunc(containers, func(c any) bool { m, ok := c.(map[string]any); return ok && m["name"] == name })
	if i < 0 {
		t.Fatalf("no container %s in the pod template", name)
	}
	return i
}

// patchAtPosition is a go-back file with the README's sed applied: both
// "/containers/0" changed to position i.
func patchAtPosition(t *testing.T, file string, i int) []byte {
	t.Helper()
	data, err := os.ReadFile(repoPath(t, "patches", file))
	if err != nil {
		t.Fatal(err)
	}
	const at = "/containers/0"
	if n := strings.Count(string(data), at); n != 2 {
		t.Fatalf("%s names %q %d times; the README's sed changes the test and the remove operation, so want 2", file, at, n)
	}
	js, err := yaml.YAMLToJSON([]byte(strings.ReplaceAll(string(data), at, "/containers/"+strconv.Itoa(i))))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

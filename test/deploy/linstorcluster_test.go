package deploy

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
)

// affinityControllerSpec is spec.affinityController of a LinstorCluster
// patch: the operator's own affinity controller, which the patch turns off.
type affinityControllerSpec struct {
	Enabled *bool `json:"enabled"`
}

func (a affinityControllerSpec) mustBeOff(t testing.TB, path string) {
	t.Helper()
	if a.Enabled == nil || *a.Enabled {
		t.Errorf("%s: spec.affinityController.enabled must be false, so the operator's affinity controller and the sidecar never both rewrite PVs", path)
	}
}

// warnings collects the warnings the API server sends, as kubectl prints them.
type warnings struct {
	mu   sync.Mutex
	text []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.text = append(w.text, text)
}

func (w *warnings) take() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := strings.Join(w.text, "\n")
	w.text = nil
	return s
}

// testLinstorClusterPatches applies each LinstorCluster patch of patches/ the
// way its README says (kubectl patch --type merge, which asks for no field
// validation, so the API server warns about unknown fields and prunes them),
// and the way strict tools do (fieldValidation=Strict), to a LinstorCluster of
// an operator that deploys its own affinity controller and of one that
// predates the field; then takes the sidecar out again (testGoingBack).
func testLinstorClusterPatches(ctx context.Context, t *testing.T, c *cluster.Cluster) {
	cfg := rest.CopyConfig(c.RESTConfig())
	warned := &warnings{}
	cfg.WarningHandler = warned
	dyn := dynamic.NewForConfigOrDie(cfg)

	for _, op := range []struct {
		name, fixture, group string
		hasField             bool
	}{
		{"operator with spec.affinityController", "linstorcluster-crd-with-affinitycontroller.yaml", "new.piraeus.io", true},
		{"operator before spec.affinityController", "linstorcluster-crd-before-affinitycontroller.yaml", "old.piraeus.io", false},
	} {
		t.Run(op.name, func(t *testing.T) {
			res := createLinstorClusterCRD(ctx, t, c, op.fixture, op.group)
			for _, file := range []string{"linstorcluster-sidecar.yaml", "linstorcluster-patches.yaml"} {
				t.Run(file, func(t *testing.T) {
					patch := patchJSON(t, file)
					for _, strict := range []bool{false, true} {
						name := strings.TrimSuffix(file, ".yaml")
						opts := metav1.PatchOptions{}
						if strict {
							name += "-strict"
							opts.FieldValidation = metav1.FieldValidationStrict
						}
						lc := &unstructured.Unstructured{Object: map[string]any{
							"apiVersion": op.group + "/v1", "kind": "LinstorCluster",
							"metadata": map[string]any{"name": name}, "spec": map[string]any{},
						}}
						if _, err := dyn.Resource(res).Create(ctx, lc, metav1.CreateOptions{}); err != nil {
							t.Fatal(err)
						}
						warned.take()
						got, err := dyn.Resource(res).Patch(ctx, name, types.MergePatchType, patch, opts)
						warning := warned.take()
						switch {
						case strict && !op.hasField:
							// Strict validation refuses the whole patch: the
							// reason the patch files say which lines to drop.
							if err == nil || !strings.Contains(err.Error(), "affinityController") {
								t.Errorf("strict: want the unknown field spec.affinityController refused, got %v", err)
							}
							continue
						case err != nil:
							t.Fatalf("strict=%v: %v", strict, err)
						}
						enabled, found, _ := unstructured.NestedBool(got.Object, "spec", "affinityController", "enabled")
						if op.hasField {
							if !found || enabled {
								t.Errorf("strict=%v: spec.affinityController.enabled = %v (set: %v), want false", strict, enabled, found)
							}
							if warning != "" {
								t.Errorf("strict=%v: unexpected warnings: %s", strict, warning)
							}
						} else {
							if found {
								t.Errorf("spec.affinityController stored by a CRD without it: %v", got.Object["spec"])
							}
							if !strings.Contains(warning, "affinityController") {
								t.Errorf("want a warning about the dropped spec.affinityController, got %q", warning)
							}
						}
						if !addsSidecar(got) {
							t.Errorf("strict=%v: the sidecar did not arrive: spec = %v", strict, got.Object["spec"])
						}
					}
				})
			}
			t.Run("going back", func(t *testing.T) {
				testGoingBack(ctx, t, dyn, res, op.hasField)
			})
		})
	}
}

// addsSidecar tells whether a patched LinstorCluster carries the sidecar,
// in the pod template or as an entry of spec.patches.
func addsSidecar(lc *unstructured.Unstructured) bool {
	containers, _, _ := unstructured.NestedSlice(lc.Object, "spec", "csiController", "podTemplate", "spec", "containers")
	for _, ctr := range containers {
		if m, ok := ctr.(map[string]any); ok && m["name"] == sidecarName {
			return true
		}
	}
	patches, _, _ := unstructured.NestedSlice(lc.Object, "spec", "patches")
	for _, p := range patches {
		if m, ok := p.(map[string]any); ok && strings.Contains(m["patch"].(string), "name: "+sidecarName) {
			return true
		}
	}
	return false
}

// patchJSON reads a file of patches/ as the JSON that kubectl patch
// --patch-file sends: kubectl converts the file's YAML to JSON, whatever the
// patch type.
func patchJSON(t *testing.T, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(repoPath(t, "patches", file))
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return js
}

// createLinstorClusterCRD creates a CRD fixture under another group, so both
// operator generations (and the chart test's own LinstorCluster CRD) live in
// one API server, and waits until it is served.
func createLinstorClusterCRD(ctx context.Context, t *testing.T, c *cluster.Cluster, fixture, group string) schema.GroupVersionResource {
	t.Helper()
	var crd unstructured.Unstructured
	readYAML(t, repoPath(t, "test", "deploy", "testdata", fixture), &crd.Object)
	if err := unstructured.SetNestedField(crd.Object, group, "spec", "group"); err != nil {
		t.Fatal(err)
	}
	crd.SetName("linstorclusters." + group)
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if _, err := dynamic.NewForConfigOrDie(c.RESTConfig()).Resource(crds).Create(ctx, &crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gk := schema.GroupKind{Group: group, Kind: "LinstorCluster"}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := newMapper(c).RESTMapping(gk, "v1"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("CRD %s not served after 30s: %v", crd.GetName(), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return schema.GroupVersionResource{Group: group, Version: "v1", Resource: "linstorclusters"}
}

package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/diff"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"
)

const (
	sidecarName   = "linstor-affinity-sidecar"
	csiController = "linstor-csi-controller"
	socketVolume  = "socket-dir"
)

// fixture returns the CSI controller Deployment as Piraeus Operator renders it.
func fixture(t testing.TB) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	readYAML(t, fixturePath(t), &d)
	return &d
}

func fixturePath(t testing.TB) string {
	return repoPath(t, "test", "deploy", "testdata", "linstor-csi-controller.yaml")
}

// patchVariant is one way users add the sidecar, applied to the fixture as
// the tool that applies it in a cluster would.
type patchVariant struct {
	name  string
	apply func(t testing.TB) *appsv1.Deployment
}

var patchVariants = []patchVariant{
	{"patches/linstorcluster-sidecar.yaml", applyPodTemplate},
	{"patches/linstorcluster-patches.yaml", applyLinstorClusterPatches},
	{"patches/kustomize", applyKustomizeComponent},
}

// applyPodTemplate merges spec.csiController.podTemplate of the LinstorCluster
// merge patch into the pod template of the Deployment, the strategic merge the
// operator performs.
func applyPodTemplate(t testing.TB) *appsv1.Deployment {
	t.Helper()
	// Strict decoding: the merge patch must set nothing but the pod template.
	var lc struct {
		Spec struct {
			AffinityController affinityControllerSpec `json:"affinityController"`
			CSIController      struct {
				PodTemplate json.RawMessage `json:"podTemplate"`
			} `json:"csiController"`
		} `json:"spec"`
	}
	path := repoPath(t, "patches", "linstorcluster-sidecar.yaml")
	readYAML(t, path, &lc)
	lc.Spec.AffinityController.mustBeOff(t, path)
	raw := lc.Spec.CSIController.PodTemplate
	// The LinstorCluster CRD types podTemplate as a PodTemplateSpec.
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var tmpl corev1.PodTemplateSpec
	if err := dec.Decode(&tmpl); err != nil {
		t.Fatalf("%s: spec.csiController.podTemplate is not a pod template: %v", path, err)
	}
	if len(tmpl.Spec.Containers) != 1 || tmpl.Spec.Containers[0].Name != sidecarName {
		t.Fatalf("%s: podTemplate should list exactly container %s, got %d containers", path, sidecarName, len(tmpl.Spec.Containers))
	}

	return mergePodTemplate(t, path, raw)
}

// mergePodTemplate strategic-merges a LinstorCluster's
// spec.csiController.podTemplate (from where) into the pod template of the
// operator's Deployment, as the operator does.
func mergePodTemplate(t testing.TB, where string, raw json.RawMessage) *appsv1.Deployment {
	t.Helper()
	orig, err := json.Marshal(fixture(t))
	if err != nil {
		t.Fatal(err)
	}
	patch := []byte(`{"spec":{"template":` + string(raw) + `}}`)
	merged, err := strategicpatch.StrategicMergePatch(orig, patch, appsv1.Deployment{})
	if err != nil {
		t.Fatalf("strategic merge of %s: %v", where, err)
	}
	var out appsv1.Deployment
	if err := json.Unmarshal(merged, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// kustomizePatch is an entry of a kustomization's patches (and of a
// LinstorCluster's spec.patches).
type kustomizePatch struct {
	Target struct {
		Group   string `json:"group"`
		Version string `json:"version"`
		Kind    string `json:"kind"`
		Name    string `json:"name"`
	} `json:"target"`
	Patch string `json:"patch,omitempty"`
	Path  string `json:"path,omitempty"`
}

// applyLinstorClusterPatches runs the spec.patches entries of the
// LinstorCluster patch through kustomize on top of the fixture, as the
// operator does with the resources it renders.
func applyLinstorClusterPatches(t testing.TB) *appsv1.Deployment {
	t.Helper()
	var lc struct {
		Spec struct {
			AffinityController affinityControllerSpec `json:"affinityController"`
			Patches            []kustomizePatch       `json:"patches"`
		} `json:"spec"`
	}
	path := repoPath(t, "patches", "linstorcluster-patches.yaml")
	readYAML(t, path, &lc)
	lc.Spec.AffinityController.mustBeOff(t, path)
	if len(lc.Spec.Patches) != 1 {
		t.Fatalf("%s: want 1 entry in spec.patches, got %d", path, len(lc.Spec.Patches))
	}
	checkTarget(t, path, lc.Spec.Patches[0])
	// The patch itself must be a Deployment that lists only the sidecar, so
	// the entry cannot change anything else by accident.
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict([]byte(lc.Spec.Patches[0].Patch), &d); err != nil {
		t.Fatalf("%s: the patch is not a Deployment: %v", path, err)
	}
	if d.Name != csiController || len(d.Spec.Template.Spec.Containers) != 1 || d.Spec.Template.Spec.Containers[0].Name != sidecarName {
		t.Fatalf("%s: the patch should name Deployment %s and list only container %s", path, csiController, sidecarName)
	}

	dir := t.TempDir()
	copyFile(t, fixturePath(t), filepath.Join(dir, "linstor-csi-controller.yaml"))
	writeKustomization(t, dir, map[string]any{
		"resources": []string{"linstor-csi-controller.yaml"},
		"patches":   lc.Spec.Patches,
	})
	return kustomizeBuild(t, dir)
}

// applyKustomizeComponent includes patches/kustomize as a component of a
// kustomization that deploys the fixture, as users without the operator do.
func applyKustomizeComponent(t testing.TB) *appsv1.Deployment {
	t.Helper()
	component := repoPath(t, "patches", "kustomize")
	var k struct {
		APIVersion string           `json:"apiVersion"`
		Kind       string           `json:"kind"`
		Patches    []kustomizePatch `json:"patches"`
	}
	readYAML(t, filepath.Join(component, "kustomization.yaml"), &k)
	if k.Kind != "Component" || len(k.Patches) != 1 {
		t.Fatalf("%s: want a Component with one patch, got kind %q with %d patches", component, k.Kind, len(k.Patches))
	}
	checkTarget(t, component, k.Patches[0])

	dir := t.TempDir()
	copyFile(t, fixturePath(t), filepath.Join(dir, "linstor-csi-controller.yaml"))
	// kustomize refuses absolute paths to components.
	rel, err := filepath.Rel(dir, component)
	if err != nil {
		t.Fatal(err)
	}
	writeKustomization(t, dir, map[string]any{
		"resources":  []string{"linstor-csi-controller.yaml"},
		"components": []string{rel},
	})
	return kustomizeBuild(t, dir)
}

func checkTarget(t testing.TB, where string, p kustomizePatch) {
	t.Helper()
	tg := p.Target
	if tg.Group != "apps" || tg.Version != "v1" || tg.Kind != "Deployment" || tg.Name != csiController {
		t.Fatalf("%s: patch target is %s/%s %s %s, want apps/v1 Deployment %s", where, tg.Group, tg.Version, tg.Kind, tg.Name, csiController)
	}
}

func writeKustomization(t testing.TB, dir string, k map[string]any) {
	t.Helper()
	k["apiVersion"] = "kustomize.config.k8s.io/v1beta1"
	k["kind"] = "Kustomization"
	data, err := yaml.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// kustomizeBuild runs bin/kustomize on dir and returns the one Deployment it
// prints.
func kustomizeBuild(t testing.TB, dir string) *appsv1.Deployment {
	t.Helper()
	out, err := run(t, dir, nil, tool(t, "kustomize"), "build", dir)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := splitManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].GetKind() != "Deployment" {
		t.Fatalf("kustomize build printed %d objects, want the Deployment only:\n%s", len(objs), out)
	}
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(objs[0].Object, &d, true); err != nil {
		t.Fatalf("kustomize output is not a valid Deployment: %v", err)
	}
	return &d
}

// checkOnlySidecarAdded asserts that patched is orig plus the sidecar
// container, and that the sidecar is fit for the CSI controller pod.
func checkOnlySidecarAdded(t *testing.T, orig, patched *appsv1.Deployment) {
	t.Helper()
	pod := &patched.Spec.Template.Spec
	var sidecars int
	for _, c := range pod.Containers {
		if c.Name == sidecarName {
			sidecars++
		}
	}
	if sidecars != 1 {
		t.Fatalf("want exactly one container %s, got %d", sidecarName, sidecars)
	}
	checkSidecar(t, container(pod, sidecarName), pod)

	// Everything else, the order of the other containers included, is as the
	// operator rendered it.
	rest := patched.DeepCopy()
	rest.Spec.Template.Spec.Containers = slices.DeleteFunc(rest.Spec.Template.Spec.Containers,
		func(c corev1.Container) bool { return c.Name == sidecarName })
	if !apiequality.Semantic.DeepEqual(orig, rest) {
		t.Errorf("the patch changed more than the sidecar container:\n%s", diff.Diff(orig, rest))
	}
}

// checkSidecar asserts what every variant of the patch promises about the
// sidecar container.
func checkSidecar(t *testing.T, c *corev1.Container, pod *corev1.PodSpec) {
	t.Helper()
	if !strings.HasPrefix(c.Image, "quay.io/piraeusdatastore/linstor-affinity-sidecar:") {
		t.Errorf("image = %q", c.Image)
	}
	if !slices.Contains(c.Args, "--csi-address=/csi/csi.sock") {
		t.Errorf("args %q lack --csi-address=/csi/csi.sock", c.Args)
	}

	// The CSI socket, and nothing else, is mounted; the volume is the pod's own.
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].Name != socketVolume || c.VolumeMounts[0].MountPath != "/csi" {
		t.Errorf("volume mounts = %+v, want only %s at /csi", c.VolumeMounts, socketVolume)
	}
	if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == socketVolume && v.EmptyDir != nil }) {
		t.Errorf("pod has no emptyDir volume %s", socketVolume)
	}

	// Zero configuration: no credentials and no LINSTOR settings of its own;
	// the sidecar takes them from the linstor-csi container.
	if len(c.EnvFrom) != 0 {
		t.Errorf("envFrom = %+v, want none", c.EnvFrom)
	}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "LS_") {
			t.Errorf("env %s is set; the sidecar must find the LINSTOR settings itself", e.Name)
		}
		if e.ValueFrom != nil && (e.ValueFrom.SecretKeyRef != nil || e.ValueFrom.ConfigMapKeyRef != nil) {
			t.Errorf("env %s comes from a Secret or ConfigMap", e.Name)
		}
	}
	for name, field := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"} {
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
		if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.FieldRef == nil || c.Env[i].ValueFrom.FieldRef.FieldPath != field {
			t.Errorf("env %s should come from the downward API field %s", name, field)
		}
	}

	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no securityContext")
	// The image's user (root), as linstor-csi: only the socket's owner may
	// connect to it (srwxr-xr-x root root). A uid here, or runAsNonRoot,
	// would lock the sidecar out of the driver (test/pod proves the rest).
	case sc.RunAsUser != nil || sc.RunAsGroup != nil:
		t.Errorf("securityContext sets runAsUser %v / runAsGroup %v; the sidecar must run as linstor-csi does", sc.RunAsUser, sc.RunAsGroup)
	case sc.RunAsNonRoot != nil && *sc.RunAsNonRoot:
		t.Error("securityContext.runAsNonRoot is true; the driver's socket admits only root")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("securityContext.readOnlyRootFilesystem is not true")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("securityContext.allowPrivilegeEscalation is not false")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("securityContext.privileged is true")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
		t.Errorf("capabilities = %+v, want drop ALL and add none", sc.Capabilities)
	}

	want := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("192Mi")},
	}
	if !apiequality.Semantic.DeepEqual(c.Resources, want) {
		t.Errorf("resources = %+v, want %+v", c.Resources, want)
	}

	// The liveness probe asks the sidecar's /healthz on 9813 through a port
	// name that is valid and unique in the crowded pod.
	p := c.LivenessProbe
	if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
		t.Fatalf("liveness probe = %+v, want GET /healthz", p)
	}
	port := p.HTTPGet.Port.String()
	i := slices.IndexFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == port })
	if i < 0 || c.Ports[i].ContainerPort != 9813 {
		t.Errorf("liveness probe port %q is not the container's port 9813 (ports %+v)", port, c.Ports)
	}
	if len(port) > 15 {
		t.Errorf("port name %q is longer than 15 characters", port)
	}
	for _, other := range pod.Containers {
		if other.Name == c.Name {
			continue
		}
		for _, op := range other.Ports {
			if op.Name == port || op.ContainerPort == 9813 {
				t.Errorf("container %s already uses port %s/%d", other.Name, op.Name, op.ContainerPort)
			}
		}
	}
}

func TestLinstorClusterPodTemplateAddsOnlyTheSidecar(t *testing.T) {
	checkOnlySidecarAdded(t, fixture(t), applyPodTemplate(t))
}

func TestLinstorClusterPatchesEntryAddsOnlyTheSidecar(t *testing.T) {
	checkOnlySidecarAdded(t, fixture(t), applyLinstorClusterPatches(t))
}

func TestKustomizeComponentAddsOnlyTheSidecar(t *testing.T) {
	checkOnlySidecarAdded(t, fixture(t), applyKustomizeComponent(t))
}

// The three files spell the same container three times; they must not drift.
func TestEveryPatchAddsTheSameSidecar(t *testing.T) {
	first := container(&applyPodTemplate(t).Spec.Template.Spec, sidecarName)
	for _, v := range patchVariants[1:] {
		got := container(&v.apply(t).Spec.Template.Spec, sidecarName)
		if !apiequality.Semantic.DeepEqual(first, got) {
			t.Errorf("%s adds another sidecar than %s:\n%s", v.name, patchVariants[0].name, diff.Diff(first, got))
		}
	}
}

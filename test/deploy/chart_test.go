package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const (
	release   = "rel"
	fullname  = "rel-linstor-affinity-sidecar"
	namespace = "piraeus-datastore"
)

// Values of the chart that the tests render, and the API server accepts.
var (
	// defaultValues leaves every option at its default.
	defaultValues = map[string]any{}

	// optionValues changes every option of the upstream chart's table that
	// does not exclude another, plus monitoring.
	optionValues = map[string]any{
		"replicaCount": 3,
		"options": map[string]any{
			"v": 4, "fullReadPeriod": "30s", "resyncRate": "1h", "propertyNamespace": "Aux/topology",
			"driverName": "linstor.csi.example.com", "extraArgs": []string{"--new-pv-grace-period=5m"},
		},
		"linstor":          map[string]any{"endpoint": "https://linstor.example.com:3371", "clientSecret": "my-linstor-tls"},
		"image":            map[string]any{"repository": "registry.example.com/las", "tag": "v9.9.9", "pullPolicy": "Always"},
		"imagePullSecrets": []map[string]any{{"name": "pull-secret"}},
		"podAnnotations":   map[string]any{"example.com/team": "storage"},
		"nodeSelector":     map[string]any{"node-role.kubernetes.io/control-plane": ""},
		"tolerations":      []map[string]any{{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}},
		"affinity": map[string]any{"podAntiAffinity": map[string]any{"preferredDuringSchedulingIgnoredDuringExecution": []map[string]any{{
			"weight": 100, "podAffinityTerm": map[string]any{
				"topologyKey":   "kubernetes.io/hostname",
				"labelSelector": map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/instance": release}},
			},
		}}}},
		"resources":           map[string]any{"requests": map[string]any{"cpu": "20m", "memory": "64Mi"}, "limits": map[string]any{"memory": "256Mi"}},
		"securityContext":     map[string]any{"runAsGroup": 3000, "seccompProfile": map[string]any{"type": "RuntimeDefault"}},
		"podSecurityContext":  map[string]any{"runAsNonRoot": true, "runAsUser": 2000, "fsGroup": 2000},
		"serviceAccount":      map[string]any{"create": false, "name": "existing-sa"},
		"rbac":                map[string]any{"create": false},
		"podDisruptionBudget": map[string]any{"enabled": false},
		"monitoring":          map[string]any{"enabled": true, "interval": "30s", "labels": map[string]any{"release": "prometheus"}},
	}

	// autoscalingValues turns on the HorizontalPodAutoscaler, which excludes
	// a fixed replicaCount, and a PodDisruptionBudget by minAvailable.
	autoscalingValues = map[string]any{
		"autoscaling":         map[string]any{"enabled": true, "minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70},
		"podDisruptionBudget": map[string]any{"minAvailable": 1},
	}
)

// chartCases are the value sets every chart test renders.
var chartCases = []struct {
	name   string
	values map[string]any
}{
	{"defaults", defaultValues},
	{"options", optionValues},
	{"autoscaling", autoscalingValues},
}

func chartDir(t testing.TB) string { return repoPath(t, "charts", "linstor-affinity-sidecar") }

// helmCmd returns bin/helm and an environment that keeps helm's (and its
// Kubernetes client's) cache and configuration inside the test's temp dir.
func helmCmd(t testing.TB) (string, []string) {
	t.Helper()
	path := tool(t, "helm")
	home := t.TempDir()
	return path, []string{
		"HELM_CACHE_HOME=" + filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME=" + filepath.Join(home, "config"),
		"HELM_DATA_HOME=" + filepath.Join(home, "data"),
		"KUBECONFIG=" + filepath.Join(home, "no-kubeconfig"),
		"KUBECACHEDIR=" + filepath.Join(home, "kube-cache"),
	}
}

// valuesFile writes values as a values file for helm.
func valuesFile(t testing.TB, values map[string]any) string {
	t.Helper()
	data, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// helmTemplate renders the chart as release "rel" in namespace ns.
func helmTemplate(t testing.TB, ns string, values map[string]any, extra ...string) ([]*unstructured.Unstructured, error) {
	t.Helper()
	helm, env := helmCmd(t)
	args := append([]string{"template", release, chartDir(t), "--namespace", ns, "--values", valuesFile(t, values)}, extra...)
	out, err := run(t, "", env, helm, args...)
	if err != nil {
		return nil, err
	}
	return splitManifests(out)
}

// manifests indexes rendered objects by "Kind/name".
type manifests map[string]*unstructured.Unstructured

func render(t testing.TB, values map[string]any) manifests {
	t.Helper()
	objs, err := helmTemplate(t, namespace, values)
	if err != nil {
		t.Fatal(err)
	}
	return index(t, objs)
}

func index(t testing.TB, objs []*unstructured.Unstructured) manifests {
	t.Helper()
	m := manifests{}
	for _, o := range objs {
		key := o.GetKind() + "/" + o.GetName()
		if m[key] != nil {
			t.Fatalf("%s rendered twice", key)
		}
		m[key] = o
	}
	return m
}

func (m manifests) keys() []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// get converts the object Kind/name to its Go type, strictly: a field the
// type does not know fails the test.
func (m manifests) get(t testing.TB, kind, name string, into runtime.Object) {
	t.Helper()
	o := m[kind+"/"+name]
	if o == nil {
		t.Fatalf("no %s/%s rendered; have %v", kind, name, m.keys())
		return
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, into, true); err != nil {
		t.Fatalf("%s/%s: %v", kind, name, err)
	}
}

func (m manifests) deployment(t testing.TB) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	var d appsv1.Deployment
	m.get(t, "Deployment", fullname, &d)
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(d.Spec.Template.Spec.Containers))
	}
	return &d, &d.Spec.Template.Spec.Containers[0]
}

func wantKinds(t *testing.T, m manifests, want ...string) {
	t.Helper()
	sort.Strings(want)
	if got := m.keys(); !slices.Equal(got, want) {
		t.Errorf("rendered %v, want %v", got, want)
	}
}

func TestChartPassesHelmLint(t *testing.T) {
	helm, env := helmCmd(t)
	for _, c := range chartCases {
		t.Run(c.name, func(t *testing.T) {
			out, err := run(t, "", env, helm, "lint", "--strict", chartDir(t), "--namespace", namespace, "--values", valuesFile(t, c.values))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Errorf("helm lint:\n%s", out)
			}
		})
	}
}

func TestChartDefaults(t *testing.T) {
	m := render(t, defaultValues)
	wantKinds(t, m, "ServiceAccount/"+fullname, "ClusterRole/"+fullname, "ClusterRoleBinding/"+fullname,
		"Role/"+fullname, "RoleBinding/"+fullname, "Deployment/"+fullname, "PodDisruptionBudget/"+fullname)

	d, c := m.deployment(t)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("replicas = %v, want 1", d.Spec.Replicas)
	}
	if c.Image != "quay.io/piraeusdatastore/linstor-affinity-sidecar:v0.1.0" || c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("image = %s (%s), want the chart's appVersion, IfNotPresent", c.Image, c.ImagePullPolicy)
	}
	wantArgs := []string{
		"--csi-address=", "--csi-container=", "--driver-name=linstor.csi.linbit.com",
		"--reconcile-rate=2m", "--resync-rate=15m", "--workers=10",
		"--leader-election=true", "--leader-election-namespace=" + namespace,
		"--http-endpoint=:9813", "-v=2",
	}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("args = %q\nwant   %q", c.Args, wantArgs)
	}
	// helm template sees no cluster: the operator's Service is assumed, without TLS.
	if v, _ := envValue(c, "LS_CONTROLLERS"); v != "http://linstor-controller."+namespace+".svc:3370" {
		t.Errorf("LS_CONTROLLERS = %q", v)
	}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "LS_") && e.Name != "LS_CONTROLLERS" {
			t.Errorf("env %s set without a client secret", e.Name)
		}
	}
	if len(d.Spec.Template.Spec.Volumes) != 0 || len(c.VolumeMounts) != 0 {
		t.Errorf("volumes %+v mounted without a client secret", d.Spec.Template.Spec.Volumes)
	}
	if d.Spec.Template.Spec.ServiceAccountName != fullname {
		t.Errorf("serviceAccountName = %q", d.Spec.Template.Spec.ServiceAccountName)
	}
	ps := d.Spec.Template.Spec.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser != 1000 {
		t.Errorf("pod securityContext = %+v, want runAsNonRoot, runAsUser 1000", ps)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext = %+v, want read-only root, drop ALL", sc)
	}
	wantRes := corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("100Mi")}}
	if !apiequality.Semantic.DeepEqual(c.Resources, wantRes) {
		t.Errorf("resources = %+v", c.Resources)
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.String() != "http" {
			t.Errorf("probe %+v does not ask the http port", p)
		}
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 9813 {
		t.Errorf("ports = %+v, want http 9813", c.Ports)
	}

	// RBAC: exactly what the code asks of the API server, no more, no less
	// (derived from the code by codeRequests).
	clusterWide, inNamespace := codeRequests(t)
	var cr rbacv1.ClusterRole
	m.get(t, "ClusterRole", fullname, &cr)
	checkRules(t, "ClusterRole", cr.Rules, clusterWide)
	var role rbacv1.Role
	m.get(t, "Role", fullname, &role)
	checkRules(t, "Role", role.Rules, inNamespace)
	var crb rbacv1.ClusterRoleBinding
	m.get(t, "ClusterRoleBinding", fullname, &crb)
	var rb rbacv1.RoleBinding
	m.get(t, "RoleBinding", fullname, &rb)
	wantSubject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: fullname, Namespace: namespace}}
	if !slices.Equal(crb.Subjects, wantSubject) || crb.RoleRef.Name != fullname || crb.RoleRef.Kind != "ClusterRole" {
		t.Errorf("ClusterRoleBinding binds %+v to %+v", crb.Subjects, crb.RoleRef)
	}
	if !slices.Equal(rb.Subjects, wantSubject) || rb.RoleRef.Name != fullname || rb.RoleRef.Kind != "Role" {
		t.Errorf("RoleBinding binds %+v to %+v", rb.Subjects, rb.RoleRef)
	}

	// A PodDisruptionBudget that protects without blocking drains of a
	// single replica.
	var pdb policyv1.PodDisruptionBudget
	m.get(t, "PodDisruptionBudget", fullname, &pdb)
	if pdb.Spec.MinAvailable != nil || pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable != intstr.FromInt32(1) {
		t.Errorf("PDB minAvailable %v maxUnavailable %v, want maxUnavailable 1 only", pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable)
	}
	checkSelects(t, "PodDisruptionBudget", pdb.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	checkSelects(t, "Deployment", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
}

// checkRules compares RBAC rules as "group/resource" -> sorted verbs.
func checkRules(t *testing.T, what string, rules []rbacv1.PolicyRule, want map[string][]string) {
	t.Helper()
	got := map[string][]string{}
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				verbs := slices.Clone(r.Verbs)
				sort.Strings(verbs)
				got[g+"/"+res] = verbs
			}
		}
	}
	if !apiequality.Semantic.DeepEqual(got, want) {
		t.Errorf("%s rules = %v\nwant %v", what, got, want)
	}
}

// checkSelects asserts that a selector matches the pod labels.
func checkSelects(t *testing.T, what string, selector, podLabels map[string]string) {
	t.Helper()
	if len(selector) == 0 || !labels.SelectorFromSet(selector).Matches(labels.Set(podLabels)) {
		t.Errorf("%s selector %v does not select the pods (labels %v)", what, selector, podLabels)
	}
}

func TestChartOptions(t *testing.T) {
	m := render(t, optionValues)
	// No ServiceAccount, no RBAC, no PodDisruptionBudget; the metrics Service, its ServiceMonitor and the alerts.
	wantKinds(t, m, "Deployment/"+fullname, "Service/"+fullname+"-metrics", "ServiceMonitor/"+fullname, "PrometheusRule/"+fullname)

	d, c := m.deployment(t)
	pod := d.Spec.Template.Spec
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicas = %v, want 3", d.Spec.Replicas)
	}
	if c.Image != "registry.example.com/las:v9.9.9" || c.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("image = %s (%s)", c.Image, c.ImagePullPolicy)
	}
	wantArgs := []string{
		"--csi-address=", "--csi-container=", "--driver-name=linstor.csi.example.com",
		"--reconcile-rate=30s", "--resync-rate=1h", "--workers=10", "--property-namespace=Aux/topology",
		"--leader-election=true", "--leader-election-namespace=" + namespace,
		"--http-endpoint=:9813", "-v=4", "--new-pv-grace-period=5m",
	}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("args = %q\nwant   %q", c.Args, wantArgs)
	}

	// LINSTOR: the given endpoint, the client certificate as files of the secret.
	wantEnv := map[string]string{
		"LS_CONTROLLERS":           "https://linstor.example.com:3371",
		"LS_ROOT_CA_FILE":          "/etc/linstor/client/ca.crt",
		"LS_USER_CERTIFICATE_FILE": "/etc/linstor/client/tls.crt",
		"LS_USER_KEY_FILE":         "/etc/linstor/client/tls.key",
	}
	for name, want := range wantEnv {
		if got, ok := envValue(c, name); !ok || got != want {
			t.Errorf("env %s = %q, want %q", name, got, want)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("env %s copies a secret into the environment; the chart mounts it", e.Name)
		}
	}
	if len(pod.Volumes) != 1 || pod.Volumes[0].Secret == nil || pod.Volumes[0].Secret.SecretName != "my-linstor-tls" {
		t.Fatalf("volumes = %+v, want Secret my-linstor-tls", pod.Volumes)
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].Name != pod.Volumes[0].Name ||
		c.VolumeMounts[0].MountPath != "/etc/linstor/client" || !c.VolumeMounts[0].ReadOnly {
		t.Errorf("volume mounts = %+v, want the secret read-only at /etc/linstor/client", c.VolumeMounts)
	}

	// Pod placement and identity options pass through unchanged.
	if pod.ServiceAccountName != "existing-sa" {
		t.Errorf("serviceAccountName = %q", pod.ServiceAccountName)
	}
	if !slices.Equal(pod.ImagePullSecrets, []corev1.LocalObjectReference{{Name: "pull-secret"}}) {
		t.Errorf("imagePullSecrets = %+v", pod.ImagePullSecrets)
	}
	if d.Spec.Template.Annotations["example.com/team"] != "storage" {
		t.Errorf("pod annotations = %v", d.Spec.Template.Annotations)
	}
	if v, ok := pod.NodeSelector["node-role.kubernetes.io/control-plane"]; !ok || v != "" || len(pod.NodeSelector) != 1 {
		t.Errorf("nodeSelector = %v", pod.NodeSelector)
	}
	if len(pod.Tolerations) != 1 || pod.Tolerations[0].Key != "node-role.kubernetes.io/control-plane" || pod.Tolerations[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("tolerations = %+v", pod.Tolerations)
	}
	if pod.Affinity == nil || pod.Affinity.PodAntiAffinity == nil ||
		len(pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Errorf("affinity = %+v", pod.Affinity)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsUser == nil || *pod.SecurityContext.RunAsUser != 2000 ||
		pod.SecurityContext.FSGroup == nil || *pod.SecurityContext.FSGroup != 2000 {
		t.Errorf("pod securityContext = %+v", pod.SecurityContext)
	}
	// Helm merges maps: the given fields join the defaults.
	if sc := c.SecurityContext; sc == nil || sc.RunAsGroup == nil || *sc.RunAsGroup != 3000 || sc.SeccompProfile == nil ||
		sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault || sc.Capabilities == nil ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext = %+v, want the given fields and the defaults", sc)
	}
	if got := c.Resources.Limits[corev1.ResourceMemory]; got.Cmp(resource.MustParse("256Mi")) != 0 {
		t.Errorf("memory limit = %s", got.String())
	}

	// Monitoring: a Service on the pods' http port, and a ServiceMonitor
	// that selects that Service (and only it) by label.
	var svc corev1.Service
	m.get(t, "Service", fullname+"-metrics", &svc)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" || svc.Spec.Ports[0].TargetPort != intstr.FromString("http") {
		t.Errorf("Service ports = %+v", svc.Spec.Ports)
	}
	checkSelects(t, "metrics Service", svc.Spec.Selector, d.Spec.Template.Labels)
	sm := m["ServiceMonitor/"+fullname]
	if sm == nil {
		t.Fatal("no ServiceMonitor rendered")
	}
	if sm.GetAPIVersion() != "monitoring.coreos.com/v1" || sm.GetLabels()["release"] != "prometheus" {
		t.Errorf("ServiceMonitor %s with labels %v", sm.GetAPIVersion(), sm.GetLabels())
	}
	smSelector, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	checkSelects(t, "ServiceMonitor", smSelector, svc.Labels)
	if labels.SelectorFromSet(smSelector).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("ServiceMonitor selector %v also matches the pods' labels, so other Services of the release would be scraped", smSelector)
	}
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints = %v", endpoints)
	}
	ep := endpoints[0].(map[string]any)
	if ep["port"] != "metrics" || ep["path"] != "/metrics" || ep["interval"] != "30s" {
		t.Errorf("ServiceMonitor endpoint = %v", ep)
	}
}

func TestChartAutoscaling(t *testing.T) {
	m := render(t, autoscalingValues)
	d, _ := m.deployment(t)
	if d.Spec.Replicas != nil {
		t.Errorf("replicas = %d; the HorizontalPodAutoscaler owns them", *d.Spec.Replicas)
	}
	var hpa autoscalingv2.HorizontalPodAutoscaler
	m.get(t, "HorizontalPodAutoscaler", fullname, &hpa)
	ref := hpa.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.Name != fullname || ref.APIVersion != "apps/v1" {
		t.Errorf("HPA scales %+v", ref)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != 2 || hpa.Spec.MaxReplicas != 5 {
		t.Errorf("HPA replicas %v..%d, want 2..5", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
	if len(hpa.Spec.Metrics) != 1 || hpa.Spec.Metrics[0].Resource == nil || hpa.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU ||
		hpa.Spec.Metrics[0].Resource.Target.AverageUtilization == nil || *hpa.Spec.Metrics[0].Resource.Target.AverageUtilization != 70 {
		t.Errorf("HPA metrics = %+v, want CPU at 70%%", hpa.Spec.Metrics)
	}
	var pdb policyv1.PodDisruptionBudget
	m.get(t, "PodDisruptionBudget", fullname, &pdb)
	if pdb.Spec.MinAvailable == nil || *pdb.Spec.MinAvailable != intstr.FromInt32(1) || pdb.Spec.MaxUnavailable != nil {
		t.Errorf("PDB minAvailable %v maxUnavailable %v, want minAvailable 1 only", pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable)
	}
}

func TestChartSchemaRejectsBadValues(t *testing.T) {
	tool(t, "helm")
	for _, c := range []struct {
		name   string
		values map[string]any
		want   string // in helm's message
	}{
		{"replicaCount not a number", map[string]any{"replicaCount": "two"}, "/replicaCount"},
		{"reconcileRate without unit", map[string]any{"options": map[string]any{"reconcileRate": 15}}, "/options/reconcileRate"},
		{"resyncRate not a duration", map[string]any{"options": map[string]any{"resyncRate": "daily"}}, "/options/resyncRate"},
		{"misspelt option", map[string]any{"options": map[string]any{"reconcilerate": "15s"}}, "reconcilerate"},
		{"verbosity not a number", map[string]any{"options": map[string]any{"v": "debug"}}, "/options/v"},
		{"endpoint without scheme", map[string]any{"linstor": map[string]any{"endpoint": "linstor-controller:3370"}}, "/linstor/endpoint"},
		{"unknown pull policy", map[string]any{"image": map[string]any{"pullPolicy": "Sometimes"}}, "/image/pullPolicy"},
		{"monitoring.enabled not a boolean", map[string]any{"monitoring": map[string]any{"enabled": "yes"}}, "/monitoring/enabled"},
		{"unknown top-level value", map[string]any{"replicas": 2}, "replicas"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := helmTemplate(t, namespace, c.values)
			if err == nil {
				t.Fatalf("helm template accepted %v", c.values)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error does not name %q:\n%v", c.want, err)
			}
		})
	}
}

// upstreamValues is the upstream linstor-affinity-controller chart's every
// option at its defaults (testdata/upstream-chart-values.yaml).
func upstreamValues(t testing.TB) map[string]any {
	t.Helper()
	var v map[string]any
	readYAML(t, repoPath(t, "test", "deploy", "testdata", "upstream-chart-values.yaml"), &v)
	return v
}

// TestChartTakesUpstreamValues renders and lints the chart with the upstream
// chart's values unchanged: keys the sidecar uses work, the others are
// accepted and ignored, and the upstream controller's image is not run.
func TestChartTakesUpstreamValues(t *testing.T) {
	values := upstreamValues(t)
	helm, env := helmCmd(t)
	out, err := run(t, "", env, helm, "lint", "--strict", chartDir(t), "--namespace", namespace, "--values", valuesFile(t, values))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "0 chart(s) failed") {
		t.Errorf("helm lint:\n%s", out)
	}
	m := render(t, values)
	wantKinds(t, m, "ServiceAccount/"+fullname, "ClusterRole/"+fullname, "ClusterRoleBinding/"+fullname,
		"Role/"+fullname, "RoleBinding/"+fullname, "Deployment/"+fullname, "PodDisruptionBudget/"+fullname)
	_, c := m.deployment(t)
	if c.Image != "quay.io/piraeusdatastore/linstor-affinity-sidecar:v0.1.0" {
		t.Errorf("image = %s; the upstream controller's repository must give way to the sidecar's", c.Image)
	}
	wantArgs := []string{
		"--csi-address=", "--csi-container=", "--driver-name=linstor.csi.linbit.com",
		"--reconcile-rate=2m", "--resync-rate=15m", "--workers=10",
		"--leader-election=true", "--leader-election-namespace=" + namespace,
		"--http-endpoint=:9813", "-v=1",
	}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("args = %q\nwant   %q", c.Args, wantArgs)
	}
	var pdb policyv1.PodDisruptionBudget
	m.get(t, "PodDisruptionBudget", fullname, &pdb)
	if pdb.Spec.MinAvailable == nil || *pdb.Spec.MinAvailable != intstr.FromInt32(1) {
		t.Errorf("PDB minAvailable = %v, want upstream's 1", pdb.Spec.MinAvailable)
	}

	// linstor.Endpoint, as the upstream option table spells it, is taken.
	values["linstor"] = map[string]any{"Endpoint": "http://10.1.2.3:3370"}
	_, c = render(t, values).deployment(t)
	if v, _ := envValue(c, "LS_CONTROLLERS"); v != "http://10.1.2.3:3370" {
		t.Errorf("LS_CONTROLLERS = %q from linstor.Endpoint", v)
	}
}

package deploy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
)

// dryRun asks for what `kubectl apply --dry-run=server --validate=strict`
// asks: full admission and validation, an unknown field is an error, nothing
// is stored.
var dryRun = metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict}

// TestAPIServer has one control plane judge what the patches and the chart
// produce, and serve the chart's lookups of the LINSTOR installation.
func TestAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane; skipped with -short")
	}
	// Fail early on a missing tool rather than after starting the control plane.
	tool(t, "helm")
	tool(t, "kustomize")
	c := cluster.StartT(t, cluster.Options{NoControllerManager: true, NoScheduler: true})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	createNamespace(ctx, t, c, namespace)

	t.Run("AcceptsPatchedCSIControllerDeployments", func(t *testing.T) {
		variants := append([]patchVariant{{"the operator's Deployment itself", fixture}}, patchVariants...)
		for _, v := range variants {
			d := v.apply(t)
			if _, err := c.Client().AppsV1().Deployments(namespace).Create(ctx, d, dryRun); err != nil {
				t.Errorf("%s: %v", v.name, err)
			}
		}
	})

	t.Run("AcceptsChartManifests", func(t *testing.T) {
		// The Prometheus Operator is not installed; a CRD of the same name
		// lets the API server judge the ServiceMonitor's place (group,
		// version, scope) though not its fields.
		createCRD(ctx, t, c, "monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors", true)
		createCRD(ctx, t, c, "monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules", true)
		createCRD(ctx, t, c, "monitoring.coreos.com", "v1", "PodMonitor", "podmonitors", true)
		cases := append(slices.Clone(chartCases), struct {
			name   string
			values map[string]any
		}{"upstream chart values", upstreamValues(t)})
		for _, cc := range cases {
			t.Run(cc.name, func(t *testing.T) {
				objs, err := helmTemplate(t, namespace, cc.values)
				if err != nil {
					t.Fatal(err)
				}
				if len(objs) == 0 {
					t.Fatal("nothing rendered")
				}
				mapper := newMapper(c)
				for _, o := range objs {
					if err := createUnstructured(ctx, c, mapper, o); err != nil {
						t.Errorf("%s/%s: %v", o.GetKind(), o.GetName(), err)
					}
				}
			})
		}
	})

	t.Run("AcceptsMonitoringPatches", func(t *testing.T) {
		mapper := newMapper(c)
		for _, file := range []string{"podmonitor.yaml", "prometheusrule.yaml"} {
			var u unstructured.Unstructured
			readYAML(t, repoPath(t, "patches", "monitoring", file), &u.Object)
			u.SetNamespace(namespace)
			if err := createUnstructured(ctx, c, mapper, &u); err != nil {
				t.Errorf("%s: %v", file, err)
			}
		}
	})

	t.Run("LinstorClusterPatchesOnOldAndNewOperators", func(t *testing.T) {
		testLinstorClusterPatches(ctx, t, c)
	})

	t.Run("ConfigMapReaderPatchGrantsOnlyConfigMapGet", func(t *testing.T) {
		testConfigMapReaderPatch(ctx, t, c)
	})

	t.Run("SettingsErrorsAreLoud", func(t *testing.T) {
		testLoudSettings(ctx, t, c)
	})

	t.Run("ChartFindsLinstorInItsNamespace", func(t *testing.T) {
		testChartLookups(ctx, t, c)
	})

	t.Run("ChartUninstallRemovesWhatItInstalled", func(t *testing.T) {
		testChartUninstall(ctx, t, c)
	})
}

// testChartUninstall installs the chart as the README says and removes it
// with the README's helm uninstall: every object the release created is
// gone afterwards.
func testChartUninstall(ctx context.Context, t *testing.T, c *cluster.Cluster) {
	const name = "linstor-affinity-sidecar" // the README's release name
	helm, env := helmCmd(t)
	// No LINSTOR Service to find here: the endpoint is given.
	values := valuesFile(t, map[string]any{"linstor": map[string]any{"endpoint": "http://linstor-controller." + namespace + ".svc:3370"}})
	if _, err := run(t, "", env, helm, "install", name, chartDir(t), "-n", namespace, "--values", values, "--kubeconfig", c.Kubeconfig()); err != nil {
		t.Fatal(err)
	}
	manifest, err := run(t, "", env, helm, "get", "manifest", name, "-n", namespace, "--kubeconfig", c.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	objs, err := splitManifests(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 {
		t.Fatal("the release installed nothing")
	}
	t.Logf("helm install created %d objects", len(objs))
	mapper := newMapper(c)
	get := func(o *unstructured.Unstructured) error {
		if o.GetNamespace() == "" {
			// helm leaves the release namespace out of namespaced objects.
			o.SetNamespace(namespace)
		}
		ri, err := resourceOf(c, mapper, o)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ri.Get(ctx, o.GetName(), metav1.GetOptions{})
		return err
	}
	for _, o := range objs {
		if err := get(o); err != nil {
			t.Errorf("%s %s after install: %v", o.GetKind(), o.GetName(), err)
		}
	}
	if _, err := run(t, "", env, helm, "uninstall", name, "-n", namespace, "--kubeconfig", c.Kubeconfig()); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if err := get(o); !apierrors.IsNotFound(err) {
			t.Errorf("%s %s after helm uninstall: %v, want not found", o.GetKind(), o.GetName(), err)
		}
	}
}

// testChartLookups renders the chart with helm connected to the control
// plane (helm template --dry-run=server --validate), so its lookups and
// capabilities are what helm install would see.
func testChartLookups(ctx context.Context, t *testing.T, c *cluster.Cluster) {
	helm, env := helmCmd(t)
	render := func(t *testing.T, ns string, values map[string]any) (manifests, error) {
		t.Helper()
		out, err := run(t, "", env, helm, "template", release, chartDir(t), "--namespace", ns,
			"--values", valuesFile(t, values), "--dry-run=server", "--validate", "--kubeconfig", c.Kubeconfig())
		if err != nil {
			return nil, err
		}
		objs, err := splitManifests(out)
		if err != nil {
			t.Fatal(err)
		}
		return index(t, objs), nil
	}
	// linstorOf returns the LS_CONTROLLERS of the rendered pod and the secret
	// it mounts, if any.
	linstorOf := func(t *testing.T, m manifests) (string, string) {
		t.Helper()
		d, ctr := m.deployment(t)
		endpoint, _ := envValue(ctr, "LS_CONTROLLERS")
		secret := ""
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Secret != nil {
				secret = v.Secret.SecretName
			}
		}
		if _, tls := envValue(ctr, "LS_USER_KEY_FILE"); tls != (secret != "") {
			t.Errorf("TLS environment set: %v, secret mounted: %q", tls, secret)
		}
		return endpoint, secret
	}

	// Piraeus Operator with API TLS: its Service and the CSI controller's secret.
	createNamespace(ctx, t, c, "linstor-tls")
	createLinstorService(ctx, t, c, "linstor-tls")
	createTLSSecret(ctx, t, c, "linstor-tls", "linstor-csi-controller-tls")
	// Without API TLS: the Service only.
	createNamespace(ctx, t, c, "linstor-plain")
	createLinstorService(ctx, t, c, "linstor-plain")
	// Only the operator's own client secret.
	createNamespace(ctx, t, c, "linstor-client")
	createLinstorService(ctx, t, c, "linstor-client")
	createTLSSecret(ctx, t, c, "linstor-client", "linstor-client-tls")
	// No LINSTOR at all.
	createNamespace(ctx, t, c, "no-linstor")

	for _, tc := range []struct {
		ns, endpoint, secret string
	}{
		{"linstor-tls", "https://linstor-controller.linstor-tls.svc:3371", "linstor-csi-controller-tls"},
		{"linstor-plain", "http://linstor-controller.linstor-plain.svc:3370", ""},
		{"linstor-client", "https://linstor-controller.linstor-client.svc:3371", "linstor-client-tls"},
	} {
		t.Run("detected in "+tc.ns, func(t *testing.T) {
			m, err := render(t, tc.ns, defaultValues)
			if err != nil {
				t.Fatal(err)
			}
			if endpoint, secret := linstorOf(t, m); endpoint != tc.endpoint || secret != tc.secret {
				t.Errorf("LINSTOR at %q with secret %q, want %q with %q", endpoint, secret, tc.endpoint, tc.secret)
			}
		})
	}

	t.Run("explicit values win", func(t *testing.T) {
		m, err := render(t, "linstor-tls", map[string]any{"linstor": map[string]any{"endpoint": "http://10.0.0.1:3370"}})
		if err != nil {
			t.Fatal(err)
		}
		// An explicit plain-http endpoint looks up no secret.
		if endpoint, secret := linstorOf(t, m); endpoint != "http://10.0.0.1:3370" || secret != "" {
			t.Errorf("LINSTOR at %q with secret %q", endpoint, secret)
		}
		// An explicit secret turns the detected Service to https.
		m, err = render(t, "linstor-plain", map[string]any{"linstor": map[string]any{"clientSecret": "mine"}})
		if err != nil {
			t.Fatal(err)
		}
		if endpoint, secret := linstorOf(t, m); endpoint != "https://linstor-controller.linstor-plain.svc:3371" || secret != "mine" {
			t.Errorf("LINSTOR at %q with secret %q", endpoint, secret)
		}
	})

	t.Run("fails without a LINSTOR to find", func(t *testing.T) {
		_, err := render(t, "no-linstor", defaultValues)
		if err == nil || !strings.Contains(err.Error(), "set linstor.endpoint") {
			t.Errorf("want a failure that asks for linstor.endpoint, got %v", err)
		}
	})

	// A LinstorCluster that names the CSI controller's secret otherwise: the
	// chart takes that name first. Last, since the CRD changes every lookup.
	t.Run("secret named by the LinstorCluster", func(t *testing.T) {
		createCRD(ctx, t, c, "piraeus.io", "v1", "LinstorCluster", "linstorclusters", false)
		lc := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "piraeus.io/v1", "kind": "LinstorCluster",
			"metadata": map[string]any{"name": "linstorcluster"},
			"spec":     map[string]any{"apiTLS": map[string]any{"csiControllerSecretName": "custom-csi-tls"}},
		}}
		res := schema.GroupVersionResource{Group: "piraeus.io", Version: "v1", Resource: "linstorclusters"}
		if _, err := dynamic.NewForConfigOrDie(c.RESTConfig()).Resource(res).Create(ctx, lc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		createTLSSecret(ctx, t, c, "linstor-tls", "custom-csi-tls")
		m, err := render(t, "linstor-tls", defaultValues)
		if err != nil {
			t.Fatal(err)
		}
		if endpoint, secret := linstorOf(t, m); endpoint != "https://linstor-controller.linstor-tls.svc:3371" || secret != "custom-csi-tls" {
			t.Errorf("LINSTOR at %q with secret %q, want the LinstorCluster's custom-csi-tls", endpoint, secret)
		}
	})

	// Like the upstream chart: the LinstorCluster's Service in another
	// namespace (by its labels), and a refusal to go on without TLS when
	// LINSTOR's namespace holds a client Secret this release cannot mount.
	t.Run("Service of the LinstorCluster in another namespace", func(t *testing.T) {
		createNamespace(ctx, t, c, "piraeus-elsewhere")
		createNamespace(ctx, t, c, "apps")
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "linstor-controller", Namespace: "piraeus-elsewhere", Labels: map[string]string{
				"app.kubernetes.io/component": "linstor-controller", "app.kubernetes.io/instance": "linstorcluster"}},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "api", Port: 3370}}},
		}
		if _, err := c.Client().CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		m, err := render(t, "apps", defaultValues)
		if err != nil {
			t.Fatal(err)
		}
		if endpoint, secret := linstorOf(t, m); endpoint != "http://linstor-controller.piraeus-elsewhere.svc:3370" || secret != "" {
			t.Errorf("LINSTOR at %q with secret %q, want the LinstorCluster's Service in piraeus-elsewhere, plain http", endpoint, secret)
		}
		createTLSSecret(ctx, t, c, "piraeus-elsewhere", "linstor-csi-controller-tls")
		_, err = render(t, "apps", defaultValues)
		if err == nil || !strings.Contains(err.Error(), "copy it into namespace apps") {
			t.Errorf("want a refusal saying to copy the client Secret into namespace apps, got %v", err)
		}
	})
}

func createNamespace(ctx context.Context, t *testing.T, c *cluster.Cluster, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := c.Client().CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createLinstorService creates the Service Piraeus Operator puts in front of
// the LINSTOR controller.
func createLinstorService(ctx context.Context, t *testing.T, c *cluster.Cluster, ns string) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "linstor-controller", Namespace: ns,
			Labels: map[string]string{"app.kubernetes.io/component": "linstor-controller"}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app.kubernetes.io/component": "linstor-controller"},
			Ports: []corev1.ServicePort{
				{Name: "api", Port: 3370},
				{Name: "secure-api", Port: 3371},
			},
		},
	}
	if _, err := c.Client().CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createTLSSecret creates a secret with the keys of a client certificate
// secret of cert-manager and Piraeus Operator. The chart only looks at its
// name, so it holds no real certificate (and is Opaque, which spares the API
// server's warnings about PEM data it cannot parse).
func createTLSSecret(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, name string) {
	t.Helper()
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"ca.crt": []byte("ca"), "tls.crt": []byte("cert"), "tls.key": []byte("key")},
	}
	if _, err := c.Client().CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createCRD creates a CustomResourceDefinition that accepts any content, and
// waits until the API server serves it.
func createCRD(ctx context.Context, t *testing.T, c *cluster.Cluster, group, version, kind, plural string, namespaced bool) {
	t.Helper()
	scope := "Cluster"
	if namespaced {
		scope = "Namespaced"
	}
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": plural + "." + group},
		"spec": map[string]any{
			"group": group,
			"names": map[string]any{"kind": kind, "plural": plural, "singular": strings.ToLower(kind), "listKind": kind + "List"},
			"scope": scope,
			"versions": []any{map[string]any{
				"name": version, "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object", "x-kubernetes-preserve-unknown-fields": true,
				}},
			}},
		},
	}}
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if _, err := dynamic.NewForConfigOrDie(c.RESTConfig()).Resource(crds).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gk := schema.GroupKind{Group: group, Kind: kind}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := newMapper(c).RESTMapping(gk, version); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("CRD %s.%s not served after 30s: %v", plural, group, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// newMapper maps kinds to resources as the API server's discovery says now.
func newMapper(c *cluster.Cluster) meta.RESTMapper {
	return restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Client().Discovery()))
}

// createUnstructured creates any rendered object by a server-side dry run.
func createUnstructured(ctx context.Context, c *cluster.Cluster, mapper meta.RESTMapper, o *unstructured.Unstructured) error {
	ri, err := resourceOf(c, mapper, o)
	if err != nil {
		return err
	}
	_, err = ri.Create(ctx, o, dryRun)
	return err
}

// resourceOf is the API of a rendered object's kind, in its namespace.
func resourceOf(c *cluster.Cluster, mapper meta.RESTMapper, o *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := o.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("no resource for %s: %w", gvk, err)
	}
	ri := dynamic.NewForConfigOrDie(c.RESTConfig()).Resource(m.Resource)
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		return ri, nil
	}
	if o.GetNamespace() == "" {
		return nil, fmt.Errorf("namespaced %s rendered without a namespace", gvk.Kind)
	}
	return ri.Namespace(o.GetNamespace()), nil
}

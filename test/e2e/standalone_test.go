package e2e

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// Standalone mode (#4.5), exactly as the Helm chart runs it, following the
// README ("Standalone with Helm"): the chart is rendered with helm
// (linstor.endpoint and linstor.clientSecret given, as for GitOps), and the
// sidecar runs with the Deployment's args and environment, the client
// Secret it mounts, and a token of the chart's own service account with
// the chart's RBAC. No CSI socket (--csi-address=""), the driver named by
// --driver-name, every topology worked out from LINSTOR alone, which
// requires client certificates. The LINSTOR CSI driver is stopped before
// the replicas move, so nothing the sidecar does can lean on it. It must
// repair the drifted PVs of its driver, each to the topology LINSTOR's
// node properties and the volume's policy give, and leave a PV of another
// driver alone even though that PV names a volume that moved.
func TestStandaloneModeAsTheHelmChartRunsIt(t *testing.T) {
	began := time.Now()
	skipShort(t)
	if missing, err := cluster.MissingBinaries("", "helm"); err != nil || len(missing) > 0 {
		cluster.SkipOrFatal(t, fmt.Errorf("rendering the chart needs %v (make tools-deploy): %w %v", missing, cluster.ErrMissingBinary, err))
	}
	auditArgs, auditFile := auditLog(t, t.TempDir())
	b := startBed(t, testbed.Options{LinstorTLS: true, NoSidecar: true, APIServerArgs: auditArgs})
	ctx := testContext(t, 5*time.Minute)
	createStorageClasses(ctx, t, b)

	provision := func(c testbed.Claim) *corev1.PersistentVolume { return provisionOne(ctx, t, b, c) }
	strict := provision(testbed.Claim{Name: "sa-strict", StorageClass: "strict", Node: "n1"})
	zone := provision(testbed.Claim{Name: "sa-zone", StorageClass: "zone", Node: "n2"})
	hostZone := provision(testbed.Claim{Name: "sa-host-zone", StorageClass: "host-in-zone", Node: "n1"})
	// Another driver's PV on the strict volume's resource definition, with
	// the affinity that is about to go stale.
	wctx, cancel := within(ctx)
	other, err := b.CreateStaticVolume(wctx, testbed.StaticVolume{
		PV: "sa-other-driver", Claim: "sa-other-driver", Driver: "other.csi.example.com",
		Handle: strict.Spec.CSI.VolumeHandle, StorageClass: "strict", Affinity: testbed.AffinityOf(testbed.Hosts("n1")...),
	})
	cancel()
	must(t, err)
	step(t, began, "3 PVs provisioned, 1 PV of another driver")

	_, err = b.CreateControllerTLSSecret(ctx)
	must(t, err)
	chartFindsLinstor(ctx, t, b)
	// The upstream linstor-affinity-controller chart's own values, every key
	// at its default, with the two LINSTOR values a user sets.
	root, err := cluster.RepoRoot()
	must(t, err)
	upstreamValues := filepath.Join(root, "test", "deploy", "testdata", "upstream-chart-values.yaml")
	rel, err := b.RenderChart(ctx, "--values", upstreamValues,
		"--set", "linstor.endpoint="+b.Sim.URL(), "--set", "linstor.clientSecret="+testbed.ControllerTLSSecret)
	must(t, err)
	c := rel.Container()
	if !slices.Contains(c.Args, "--csi-address=") || !slices.Contains(c.Args, "--driver-name="+testbed.DriverName) {
		t.Fatalf("chart container args %q: want standalone mode (--csi-address= and --driver-name=%s)", c.Args, testbed.DriverName)
	}
	for _, m := range c.VolumeMounts {
		if m.Name == "socket-dir" || strings.HasPrefix(m.MountPath, "/csi") {
			t.Errorf("standalone chart mounts %s at %s", m.Name, m.MountPath)
		}
	}
	// Only the reconcile rate is the bed's, to keep the test short.
	wctx, cancel = within(ctx)
	must(t, b.StartChartSidecar(wctx, rel, "--reconcile-rate=2s"))
	cancel()
	step(t, began, "sidecar running as the chart's Deployment would (args %q)", c.Args)

	wctx, cancel = within(ctx)
	must(t, b.WaitCycles(wctx, 2))
	cancel()
	if n := repairs(ctx, t, b, nil); n != 0 {
		t.Fatalf("standalone sidecar made %v repairs of PVs in sync", n)
	}

	// From here on there is no CSI driver to ask.
	must(t, b.Driver.Process.Stop())
	if conn, err := net.Dial("unix", b.Driver.SocketPath()); err == nil {
		_ = conn.Close()
		t.Fatalf("CSI socket %s still answers after the driver stopped", b.Driver.SocketPath())
	}
	step(t, began, "LINSTOR CSI stopped")
	before := snapshotPVs(ctx, t, b, other.Name)

	moveOff := func(pv *corev1.PersistentVolume, from string) {
		t.Helper()
		rd := pv.Spec.CSI.VolumeHandle
		holders, err := b.Sim.DiskfulNodes(rd)
		must(t, err)
		for _, to := range []string{"n3", "n4", "n2", "n1"} {
			if !slices.Contains(holders, to) {
				must(t, b.Sim.MoveReplica(rd, from, to))
				step(t, began, "replica of %s moved %s -> %s", rd, from, to)
				return
			}
		}
		t.Fatalf("no node to move %s to", rd)
	}
	moveOff(strict, "n1")
	moveOff(zone, "n2")
	moveOff(hostZone, "n1")

	wctx, cancel = within(ctx)
	defer cancel()
	for _, c := range []struct {
		pv    *corev1.PersistentVolume
		class string
	}{{strict, "strict"}, {zone, "zone"}, {hostZone, "host-in-zone"}} {
		want := expected(t, b, c.pv.Spec.CSI.VolumeHandle, c.class)
		if _, err := b.WaitPVAffinity(wctx, c.pv.Name, want...); err != nil {
			t.Fatal(err)
		}
		if _, err := b.WaitClaimBound(wctx, c.pv.Spec.ClaimRef.Name, c.pv.Name); err != nil {
			t.Fatal(err)
		}
		step(t, began, "PV %s (%s) now %s", c.pv.Name, c.class, testbed.DescribeSegments(want))
	}
	must(t, b.WaitCycles(wctx, 2))
	assertUntouched(ctx, t, b, before)
	if acted := actedOn(t, b); slices.Contains(acted, other.Name) {
		t.Errorf("sidecar acted on %s, a PV of another driver", other.Name)
	}
	if n := repairs(ctx, t, b, map[string]string{"action": "replace", "result": "success"}); n != 3 {
		t.Errorf("repairs_total{action=replace,result=success} = %v, want 3", n)
	}
	if n := repairs(ctx, t, b, map[string]string{"result": "error"}); n != 0 {
		t.Errorf("repairs_total{result=error} = %v, want 0", n)
	}
	if b.Sidecar.Exited() {
		t.Errorf("sidecar exited: %v", b.Sidecar.ExitErr())
	}
	// The chart's RBAC against what the sidecar asked for in this run, from
	// the API server's audit log (test/deploy also derives the rules from the
	// code); and, from its own metrics, none of its requests refused.
	compareRBACWithAudit(t, rel, auditFile)
	m, err := b.Metrics(ctx)
	must(t, err)
	if n := m.Sum("rest_client_requests_total", nil); n == 0 {
		t.Error("rest_client_requests_total counts no request at all")
	}
	if n := m.Sum("rest_client_requests_total", map[string]string{"code": "403"}); n != 0 {
		t.Errorf("%v requests refused (403) with the chart's RBAC", n)
	}
	assertNoVolumeDeleted(t, b)
}

// chartFindsLinstor follows the README's `helm install ... -n
// piraeus-datastore` with no values, rendering with lookups against the
// bed's API server (--dry-run=server): without the Service
// linstor-controller of Piraeus Operator the chart refuses, with it (and the
// CSI controller's client Secret present) it finds the HTTPS endpoint and
// the Secret by itself.
func chartFindsLinstor(ctx context.Context, t *testing.T, b *testbed.Bed) {
	t.Helper()
	online := []string{"--dry-run=server", "--kubeconfig=" + b.Cluster.Kubeconfig()}
	_, err := b.RenderChart(ctx, online...)
	if err == nil || !strings.Contains(err.Error(), "no Service linstor-controller") {
		t.Errorf("chart without linstor.endpoint and without Service linstor-controller: %v, want a refusal naming the Service", err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "linstor-controller", Namespace: testbed.ControllerNamespace},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "api", Port: 3370}, {Name: "secure-api", Port: 3371},
		}},
	}
	_, err = b.Kube.CoreV1().Services(testbed.ControllerNamespace).Create(ctx, svc, metav1.CreateOptions{})
	must(t, err)
	rel, err := b.RenderChart(ctx, online...)
	must(t, err)
	c := rel.Container()
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if want := "https://linstor-controller." + testbed.ControllerNamespace + ".svc:3371"; env["LS_CONTROLLERS"] != want {
		t.Errorf("chart found LS_CONTROLLERS=%q, want %s", env["LS_CONTROLLERS"], want)
	}
	secret := ""
	for _, v := range rel.Deployment.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secret = v.Secret.SecretName
		}
	}
	if secret != testbed.ControllerTLSSecret || env["LS_USER_KEY_FILE"] == "" {
		t.Errorf("chart mounts secret %q (LS_USER_KEY_FILE %q), want %s found by itself", secret, env["LS_USER_KEY_FILE"], testbed.ControllerTLSSecret)
	}
}

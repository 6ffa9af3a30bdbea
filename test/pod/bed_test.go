package pod

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/node"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

const (
	sidecarName = "linstor-affinity-sidecar"
)

// podBed is a test bed whose CSI controller runs as the operator's
// Deployment, with the sidecar patched in, on a real kubelet node.
type podBed struct {
	*testbed.Bed
	Node       *node.Node
	Deployment *appsv1.Deployment
	TLS        testbed.ControllerTLS
	Edits      []testbed.PodEdit
}

// startPodBed starts control plane, simulator (HTTPS with client
// certificates), the node with the pod's images, the operator's RBAC and
// TLS Secret, and the patched Deployment; it returns once one pod is Ready
// with every container running.
func startPodBed(t *testing.T) *podBed {
	t.Helper()
	began := time.Now()
	b := testbed.StartT(t, testbed.Options{LinstorTLS: true, CSIInPod: true, NoSidecar: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n := node.StartT(t, b.Cluster, node.Options{})

	archive, err := testbed.BuildPodImages(ctx, t.TempDir())
	must(t, err)
	must(t, n.ImportImages(ctx, archive))
	step(t, began, "images built and imported into the node's containerd")

	for _, sc := range []testbed.StorageClass{{Name: "strict", Policy: testbed.PolicyStrict}} {
		must(t, b.CreateStorageClass(ctx, sc))
	}
	must(t, b.ApplyOperatorRBAC(ctx))
	material, err := b.CreateControllerTLSSecret(ctx)
	must(t, err)

	d, err := testbed.ApplySidecarPodTemplate(testbed.OperatorCSIControllerDeployment(b.Sim.URL()))
	must(t, err)
	host, port := apiEndpoint(t, b)
	edits := testbed.MachineEdits(n.Name, host, port)
	testbed.ForceEdits(d, edits)
	t.Logf("Deployment %s as %s, patched with patches/linstorcluster-sidecar.yaml; edits these machines force:", d.Name, testbed.OperatorModel)
	for _, e := range edits {
		t.Logf("  - %s", e.Description)
	}
	created, err := b.Kube.AppsV1().Deployments(testbed.ControllerNamespace).Create(ctx, d, metav1.CreateOptions{})
	must(t, err)
	pb := &podBed{Bed: b, Node: n, Deployment: created, TLS: material, Edits: edits}
	t.Cleanup(func() {
		if t.Failed() {
			pb.dumpPods(t)
		}
		// Pods first, so kubelet stops the containers as in a cluster.
		_ = b.Kube.AppsV1().Deployments(testbed.ControllerNamespace).Delete(context.Background(), d.Name, metav1.DeleteOptions{})
	})
	wctx, wcancel := context.WithTimeout(ctx, 4*time.Minute)
	defer wcancel()
	if _, err := pb.waitPodReady(wctx, ""); err != nil {
		t.Fatal(err)
	}
	step(t, began, "CSI controller pod Ready")
	return pb
}

// apiEndpoint is the API server's loopback host and port.
func apiEndpoint(t *testing.T, b *testbed.Bed) (string, int) {
	t.Helper()
	u, err := url.Parse(b.Cluster.RESTConfig().Host)
	must(t, err)
	port, err := strconv.Atoi(u.Port())
	must(t, err)
	return u.Hostname(), port
}

// pods lists the CSI controller's pods that are not being deleted.
func (pb *podBed) pods(ctx context.Context) ([]corev1.Pod, error) {
	sel := labels.SelectorFromSet(pb.Deployment.Spec.Selector.MatchLabels).String()
	list, err := pb.Kube.CoreV1().Pods(testbed.ControllerNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// waitPodReady waits for a pod of the Deployment other than notName that
// is Ready with every container running.
func (pb *podBed) waitPodReady(ctx context.Context, notName string) (*corev1.Pod, error) {
	var found *corev1.Pod
	err := testbed.Poll(ctx, "CSI controller pod Ready", func(ctx context.Context) (bool, string) {
		pods, err := pb.pods(ctx)
		if err != nil {
			return false, err.Error()
		}
		var states []string
		for i := range pods {
			p := &pods[i]
			if p.Name == notName {
				continue
			}
			state := podState(p)
			states = append(states, p.Name+": "+state)
			if state == "ready" {
				found = p
				return true, ""
			}
		}
		return false, strings.Join(states, "; ")
	})
	return found, err
}

// podState is "ready" when the pod is Ready and every container runs,
// otherwise a summary of what is not.
func podState(p *corev1.Pod) string {
	if p.Spec.NodeName == "" {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled {
				return "not scheduled: " + c.Message
			}
		}
		return "not scheduled"
	}
	var waiting []string
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Running == nil && cs.State.Waiting != nil:
			waiting = append(waiting, fmt.Sprintf("%s waiting (%s: %s)", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message))
		case cs.State.Running == nil && cs.State.Terminated != nil:
			waiting = append(waiting, fmt.Sprintf("%s terminated (%s, exit %d)", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode))
		case cs.State.Running == nil:
			waiting = append(waiting, cs.Name+" not running")
		}
	}
	if len(p.Status.ContainerStatuses) < len(p.Spec.Containers) {
		waiting = append(waiting, fmt.Sprintf("%d of %d container statuses", len(p.Status.ContainerStatuses), len(p.Spec.Containers)))
	}
	ready := false
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if !ready {
		waiting = append(waiting, "not Ready")
	}
	if len(waiting) == 0 {
		return "ready"
	}
	return string(p.Status.Phase) + ": " + strings.Join(waiting, ", ")
}

// containerStatus returns the status of container name in pod.
func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == name {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// podLog reads a container's log through the API server
// (pods/log?container=...), as kubectl logs -c does.
func (pb *podBed) podLog(ctx context.Context, pod, container string, previous bool) (string, error) {
	raw, err := pb.Kube.CoreV1().Pods(testbed.ControllerNamespace).GetLogs(pod, &corev1.PodLogOptions{Container: container, Previous: previous}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("logs of %s/%s: %w", pod, container, err)
	}
	return string(raw), nil
}

// dumpPods logs every pod's state and the end of each container's log.
func (pb *podBed) dumpPods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	list, err := pb.Kube.CoreV1().Pods(testbed.ControllerNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Logf("list pods: %v", err)
		return
	}
	for i := range list.Items {
		p := &list.Items[i]
		t.Logf("pod %s on %q: %s", p.Name, p.Spec.NodeName, podState(p))
		for _, c := range p.Spec.Containers {
			l, err := pb.podLog(ctx, p.Name, c.Name, false)
			if err != nil {
				t.Logf("  %s: %v", c.Name, err)
				continue
			}
			if len(l) > 3000 {
				l = l[len(l)-3000:]
			}
			t.Logf("--- %s/%s, last lines:\n%s", p.Name, c.Name, l)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func step(t *testing.T, began time.Time, format string, args ...any) {
	t.Helper()
	t.Logf("[%6.1fs] %s", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
}

// skipUnlessRealNode skips under -short, and when the machine cannot run a
// node (not root) unless the node is required.
func skipUnlessRealNode(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("real-pod tests run a node; skipped under -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("real-pod tests need root (kubelet, containerd, runc)")
	}
}

func testbedNotFound(err error) bool { return apierrors.IsNotFound(err) }

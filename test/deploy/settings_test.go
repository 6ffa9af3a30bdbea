package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
)

// buildSidecar builds the sidecar binary into a temp dir.
func buildSidecar(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "linstor-affinity-sidecar")
	if _, err := run(t, repoPath(t), nil, "go", "build", "-o", bin, "./cmd/linstor-affinity-sidecar"); err != nil {
		t.Fatal(err)
	}
	return bin
}

func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// testLoudSettings runs the sidecar as it runs in the CSI controller pod
// (POD_NAME, POD_NAMESPACE, --csi-container=linstor-csi, no LS_* variable)
// against the API server, where its settings cannot be had:
//   - its pod does not exist: it must not go on with golinstor's default
//     http://localhost:3370 but stay unready, say why on /readyz and in a
//     warning Event on its pod, and keep trying;
//   - the CSI container names an LS_BEARER_TOKEN_FILE on a volume the
//     sidecar's container does not mount: it must stop, naming path and
//     volume.
func testLoudSettings(ctx context.Context, t *testing.T, c *cluster.Cluster) {
	bin := buildSidecar(t)
	env := []string{"KUBECONFIG=", "POD_NAMESPACE=" + namespace}
	for _, k := range os.Environ() {
		if strings.HasPrefix(k, "LS_") {
			t.Fatalf("test environment sets %s", k)
		}
	}

	t.Run("pod unreadable: unready with the reason, Event, retries", func(t *testing.T) {
		addr := freeAddress(t)
		cmd := exec.Command(bin, "--kubeconfig="+c.Kubeconfig(), "--csi-address=/nonexistent/csi.sock",
			"--http-endpoint="+addr, "--timeout=5s", "-v=2")
		cmd.Env = append(os.Environ(), append(env, "POD_NAME=no-such-pod")...)
		logs := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		defer func() {
			_ = cmd.Process.Kill()
			<-done
			if t.Failed() {
				t.Logf("sidecar log:\n%s", logs.String())
			}
		}()

		var body string
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, b, err := get("http://" + addr + "/readyz")
			body = b
			if err == nil && code == http.StatusServiceUnavailable && strings.Contains(b, "cannot read the LINSTOR settings") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz: %d %q %v; want 503 saying the settings cannot be read", code, b, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		for _, want := range []string{"container linstor-csi of pod " + namespace + "/no-such-pod", "not found", "--csi-container"} {
			if !strings.Contains(body, want) {
				t.Errorf("/readyz says %q; want it to contain %q", body, want)
			}
		}

		var ev *corev1.Event
		for deadline := time.Now().Add(30 * time.Second); ev == nil; {
			list, err := c.Client().CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=no-such-pod"})
			if err != nil {
				t.Fatal(err)
			}
			for i := range list.Items {
				if list.Items[i].Reason == "SettingsUnreadable" {
					ev = &list.Items[i]
				}
			}
			if ev == nil && time.Now().After(deadline) {
				t.Fatal("no SettingsUnreadable Event on the sidecar's pod")
			}
			time.Sleep(200 * time.Millisecond)
		}
		if ev.Type != corev1.EventTypeWarning || ev.InvolvedObject.Kind != "Pod" || !strings.Contains(ev.Message, "will not guess") {
			t.Errorf("Event %s %s on %s: %q", ev.Type, ev.Reason, ev.InvolvedObject.Kind, ev.Message)
		}

		// Still retrying, never on to the CSI driver or LINSTOR.
		time.Sleep(3 * time.Second)
		select {
		case err := <-done:
			done <- err
			t.Fatalf("the sidecar exited: %v", err)
		default:
		}
		if n := strings.Count(logs.String(), "trying again"); n < 2 {
			t.Errorf("%d attempts logged in 3s+; want retries with backoff", n)
		}
		for _, never := range []string{"Waiting for the CSI driver", "localhost:3370", "using flags and LS_* environment only"} {
			if strings.Contains(logs.String(), never) {
				t.Errorf("the sidecar went on without its settings: log has %q", never)
			}
		}
	})

	t.Run("LS_BEARER_TOKEN_FILE not mounted: stops naming path and volume", func(t *testing.T) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "csi-controller-token", Namespace: namespace},
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{
					{Name: "linstor-csi", Image: "linstor-csi", Env: []corev1.EnvVar{
						{Name: "LS_CONTROLLERS", Value: "https://linstor-controller:3371"},
						{Name: "LS_BEARER_TOKEN_FILE", Value: "/var/run/linstor-token/token"},
					}, VolumeMounts: []corev1.VolumeMount{{Name: "linstor-token", MountPath: "/var/run/linstor-token"}}},
					{Name: sidecarName, Image: sidecarName},
				},
				Volumes: []corev1.Volume{{Name: "linstor-token", VolumeSource: corev1.VolumeSource{
					Secret: &corev1.SecretVolumeSource{SecretName: "linstor-token"}}}},
			},
		}
		// No controller manager creates service accounts here.
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "linstor-csi-controller", Namespace: namespace}}
		if _, err := c.Client().CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		pod.Spec.ServiceAccountName = sa.Name
		if _, err := c.Client().CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, "", append(env, "POD_NAME="+pod.Name), bin, "--kubeconfig="+c.Kubeconfig(),
			"--csi-address=/nonexistent/csi.sock", "--http-endpoint=", "--timeout=5s")
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("want exit 1, got %v\n%s", err, out)
		}
		for _, want := range []string{"LS_BEARER_TOKEN_FILE=/var/run/linstor-token/token", "mount volume linstor-token at /var/run/linstor-token"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message lacks %q:\n%v", want, err)
			}
		}
	})
}

func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, string(b), nil
}

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

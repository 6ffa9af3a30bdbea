package node_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/hack/ociimage"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/node"
)

// A pod runs on the node, and Stop leaves nothing behind: no container
// process, no shim, no mount under the node's dir, no cgroup of the node.
func TestNodeRunsAPodAndLeavesNothingBehind(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("runs a kubelet: needs root, skipped under -short")
	}
	// The pod names its node and mounts no service account token: no
	// scheduler or controller manager needed.
	c := cluster.StartT(t, cluster.Options{NoControllerManager: true, NoScheduler: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n, err := node.Start(ctx, c, node.Options{})
	if err != nil {
		cluster.SkipOrFatal(t, err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cluster.LogTails(t, n.Processes())
			_ = n.Stop()
		}
	})

	root, err := cluster.RepoRoot()
	must(t, err)
	dir := t.TempDir()
	pause := filepath.Join(dir, "pause")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", pause, "./test/node/pause")
	cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build pause: %v\n%s", err, out)
	}
	img, err := ociimage.Build(ociimage.Spec{OS: "linux", Arch: runtimeArch(), Files: []ociimage.File{{Src: pause, Dst: "/pause"}}, Entrypoint: []string{"/pause"}})
	must(t, err)
	archive := filepath.Join(dir, "images.tar")
	must(t, ociimage.WriteArchive(archive, ociimage.Named{Ref: node.PauseImage, Image: img}))
	must(t, n.ImportImages(ctx, archive))

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sleeper", Namespace: "default"},
		Spec: corev1.PodSpec{
			HostNetwork:                   true,
			AutomountServiceAccountToken:  ptr.To(false),
			NodeName:                      n.Name,
			TerminationGracePeriodSeconds: ptr.To[int64](2),
			Containers:                    []corev1.Container{{Name: "sleeper", Image: node.PauseImage}},
		},
	}
	_, err = c.Client().CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	must(t, err)
	var running *corev1.Pod
	for running == nil {
		p, err := c.Client().CoreV1().Pods("default").Get(ctx, "sleeper", metav1.GetOptions{})
		must(t, err)
		if len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil {
			running = p
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod never ran: %+v", p.Status)
		case <-time.After(500 * time.Millisecond):
		}
	}
	pid, err := n.ContainerPID(ctx, running.Status.ContainerStatuses[0].ContainerID)
	must(t, err)
	t.Logf("container runs as pid %d", pid)

	dirName := n.Dir()
	stopped = true
	if err := n.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/proc", itoa(pid))); err == nil {
		t.Errorf("container process %d still runs", pid)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	must(t, err)
	if strings.Contains(string(mounts), dirName) {
		t.Errorf("mounts under %s remain", dirName)
	}
	if _, err := os.Stat(dirName); !os.IsNotExist(err) {
		t.Errorf("node dir %s remains (%v)", dirName, err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		raw, _ := os.ReadFile(p)
		if strings.Contains(string(raw), dirName) {
			t.Errorf("process %s still refers to the node: %q", p, strings.ReplaceAll(string(raw), "\x00", " "))
		}
	}
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/e2e-node-*")
	for _, d := range cg {
		t.Errorf("cgroup %s remains", d)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

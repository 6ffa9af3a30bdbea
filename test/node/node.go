package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
)

// Options shape a node.
type Options struct {
	// Name is the Node's name, and must be a loopback address; empty means
	// DefaultName. kubelet refuses a loopback --node-ip, but takes a node
	// named by an IP address as that address: so the API server reaches
	// kubelet (pods/log) on loopback, and kubelet listens nowhere else.
	Name string
	// Labels are added to the Node at registration (kubelet --node-labels).
	Labels map[string]string
	// Verbose is kubelet's -v level; zero means 2.
	Verbose int
}

// Node is a running kubelet with its containerd. Stop it (StartT's cleanup
// does) to remove every container, mount and cgroup it made.
type Node struct {
	Name string

	c          *cluster.Cluster
	opts       Options
	dir        string
	cgroupName string
	kubeletBin string

	containerd *cluster.Process
	kubelet    *cluster.Process
	sysctls    map[string]string
	stopped    bool
}

// Binaries a node needs besides bin/kubelet: Debian's containerd, its ctr
// and runc (hack/install-node-deps.sh installs them).
var hostBinaries = []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc"}

// ErrNoRuntime says the container runtime is not installed.
var ErrNoRuntime = errors.New("container runtime not installed (run hack/install-node-deps.sh)")

// Start runs containerd and kubelet for c and waits until the Node is
// registered. On error everything started is stopped again.
func Start(ctx context.Context, c *cluster.Cluster, opts Options) (*Node, error) {
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if ip := net.ParseIP(opts.Name); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("node name %q: must be a loopback address (kubelet's address is its name)", opts.Name)
	}
	if opts.Verbose == 0 {
		opts.Verbose = 2
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("node: kubelet and containerd need root")
	}
	missing, err := cluster.MissingBinaries(c.BinDir(), "kubelet")
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("node needs %v: %w", missing, cluster.ErrMissingBinary)
	}
	for _, b := range hostBinaries {
		if _, err := exec.LookPath(b); err != nil {
			return nil, fmt.Errorf("node: %s: %w", b, ErrNoRuntime)
		}
	}
	// A short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "e2e-node-")
	if err != nil {
		return nil, err
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	n := &Node{
		Name: opts.Name, c: c, opts: opts, dir: dir,
		cgroupName: "e2e-node-" + hex.EncodeToString(suffix),
		kubeletBin: filepath.Join(c.BinDir(), "kubelet"),
	}
	if err := n.start(ctx); err != nil {
		return nil, errors.Join(err, n.Stop())
	}
	return n, nil
}

// Dir is the node's temp dir (state, sockets, logs).
func (n *Node) Dir() string { return n.dir }

// Processes are containerd and kubelet, for log tails.
func (n *Node) Processes() []*cluster.Process {
	var ps []*cluster.Process
	for _, p := range []*cluster.Process{n.containerd, n.kubelet} {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// ContainerdSocket is the node's containerd address.
func (n *Node) ContainerdSocket() string { return filepath.Join(n.dir, "containerd.sock") }

func (n *Node) logPath(name string) string { return filepath.Join(n.dir, "logs", name+".log") }

func (n *Node) start(ctx context.Context) error {
	if err := n.startContainerd(ctx); err != nil {
		return err
	}
	n.sysctls = readSysctls()
	if err := n.startKubelet(ctx); err != nil {
		return err
	}
	return n.waitRegistered(ctx)
}

func (n *Node) startContainerd(ctx context.Context) error {
	cfg := filepath.Join(n.dir, "containerd.toml")
	if err := os.WriteFile(cfg, []byte(n.containerdConfig()), 0o644); err != nil {
		return err
	}
	for _, d := range []string{"cni/net.d", "cni/bin", "runc"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return err
		}
	}
	p, err := cluster.StartProcess(ctx, cluster.ProcessSpec{
		Name: "containerd", Path: mustLookPath("containerd"),
		Args:    []string{"--config", cfg},
		LogPath: n.logPath("containerd"),
		// The shims find containerd-shim-runc-v2 and runc on PATH.
		StopGrace: 10 * time.Second,
	})
	if err != nil {
		return err
	}
	n.containerd = p
	return poll(ctx, p, "containerd CRI", func(ctx context.Context) error {
		_, err := n.ctr(ctx, "version")
		return err
	})
}

// containerdConfig keeps every path of containerd inside the node's dir:
// root, state, socket, the runc root of its containers; the CRI plugin uses
// the pause image the test bed imports, no CNI configuration (pods use the
// host network), the cgroupfs driver, a streaming server on loopback, and
// never lowers oom_score_adj.
func (n *Node) containerdConfig() string {
	d := n.dir
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = %[3]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[4]q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  enable_selinux = false
  # These VMs give root no CAP_SYS_RESOURCE: runc cannot lower a process's
  # oom_score_adj (kubelet asks -998 for sandboxes), so containerd clamps it.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[5]q
    conf_dir = %[6]q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[7]q
        BinaryName = %[8]q
`, filepath.Join(d, "containerd", "root"), filepath.Join(d, "containerd", "state"), n.ContainerdSocket(),
		PauseImage, filepath.Join(d, "cni", "bin"), filepath.Join(d, "cni", "net.d"), filepath.Join(d, "runc"), mustLookPath("runc"))
}

// DefaultName is the node's name and address.
const DefaultName = "127.0.0.1"

// PauseImage is the sandbox image: the test bed builds and imports it
// (no registry to pull registry.k8s.io/pause from).
const PauseImage = "e2e.local/pause:v1"

func (n *Node) startKubelet(ctx context.Context) error {
	ports, err := freeLoopbackPorts(2)
	if err != nil {
		return err
	}
	// The pods' cgroups go under a parent of their own (cgroupRoot, made by
	// runc) in every hierarchy, so Stop removes exactly what this node made.
	cfg := filepath.Join(n.dir, "kubelet.yaml")
	if err := os.WriteFile(cfg, []byte(n.kubeletConfig(ports[0], ports[1])), 0o644); err != nil {
		return err
	}
	var labels []string
	for k, v := range n.opts.Labels {
		labels = append(labels, k+"="+v)
	}
	args := []string{
		"--config=" + cfg,
		"--kubeconfig=" + n.c.Kubeconfig(),
		"--root-dir=" + filepath.Join(n.dir, "kubelet"),
		"--cert-dir=" + filepath.Join(n.dir, "kubelet-pki"),
		"--hostname-override=" + n.Name,
		fmt.Sprintf("--v=%d", n.opts.Verbose),
	}
	if len(labels) > 0 {
		args = append(args, "--node-labels="+strings.Join(labels, ","))
	}
	p, err := cluster.StartProcess(ctx, cluster.ProcessSpec{
		Name: "kubelet", Path: n.kubeletBin, Args: args,
		LogPath:   n.logPath("kubelet"),
		StopGrace: 10 * time.Second,
	})
	if err != nil {
		return err
	}
	n.kubelet = p
	return nil
}

// kubeletConfig is a KubeletConfiguration for a cgroup v1 machine without
// systemd or swap: cgroupfs driver, no QoS cgroups, nothing enforced on node
// allocatable, no eviction and no image garbage collection (the images are
// imported, not pulled), its API on loopback for the API server (pods/log)
// without authentication.
func (n *Node) kubeletConfig(port, healthzPort int) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
cgroupRoot: /%s
cgroupsPerQOS: false
enforceNodeAllocatable: []
failCgroupV1: false
failSwapOn: false
localStorageCapacityIsolation: false
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: ""
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
maxPods: 30
podPidsLimit: -1
podLogsDir: %s
`, port, healthzPort, n.ContainerdSocket(), n.cgroupName, filepath.Join(n.dir, "pod-logs"))
}

// waitRegistered waits until the Node object exists, then removes the
// not-ready taint the API server's TaintNodesByCondition admission gives
// every new Node. The node lifecycle controller would remove it once the
// node is Ready; the test control plane runs without that controller (the
// bed's other Nodes have no kubelet), and this node stays NotReady for want
// of a pod network, which hostNetwork pods do not need.
func (n *Node) waitRegistered(ctx context.Context) error {
	nodes := n.c.Client().CoreV1().Nodes()
	return poll(ctx, n.kubelet, "node "+n.Name+" registered and untainted", func(ctx context.Context) error {
		node, err := nodes.Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		kept := node.Spec.Taints[:0]
		for _, t := range node.Spec.Taints {
			if t.Key != corev1.TaintNodeNotReady {
				kept = append(kept, t)
			}
		}
		if len(kept) == len(node.Spec.Taints) {
			return nil
		}
		node.Spec.Taints = kept
		if _, err := nodes.Update(ctx, node, metav1.UpdateOptions{}); err != nil {
			return err
		}
		return errors.New("taint removed; checking again")
	})
}

// Ctr runs ctr against the node's containerd in the k8s.io namespace (the
// CRI plugin's) and returns its combined output.
func (n *Node) ctr(ctx context.Context, args ...string) (string, error) {
	all := append([]string{"--address", n.ContainerdSocket(), "--namespace", "k8s.io"}, args...)
	cmd := exec.CommandContext(ctx, "ctr", all...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// ImportImages imports an OCI archive (hack/ociimage) into the node's
// containerd, where kubelet finds its images without pulling.
func (n *Node) ImportImages(ctx context.Context, archive string) error {
	_, err := n.ctr(ctx, "images", "import", archive)
	return err
}

// DeleteNode removes the Node object (after Stop, so nothing re-registers).
func (n *Node) deleteNodeObject() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := n.c.Client().CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// Ready reports the Node's Ready condition, for diagnostics.
func (n *Node) Ready(ctx context.Context) (corev1.ConditionStatus, string, error) {
	node, err := n.c.Client().CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		return "", "", err
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status, c.Message, nil
		}
	}
	return corev1.ConditionUnknown, "", nil
}

func mustLookPath(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		return name
	}
	return p
}

// poll runs check every 200 ms until it succeeds, p exits, or ctx ends.
func poll(ctx context.Context, p *cluster.Process, what string, check func(context.Context) error) error {
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		if p != nil && p.Exited() {
			return fmt.Errorf("%s: %s exited (%v); log %s:\n%s", what, p.Name(), p.ExitErr(), p.LogPath(), p.LogTail(3000))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ContainerPID returns the host PID of a running container's first process,
// from the container ID in a pod's status (containerd://<id>).
func (n *Node) ContainerPID(ctx context.Context, containerID string) (int, error) {
	id := strings.TrimPrefix(containerID, "containerd://")
	out, err := exec.CommandContext(ctx, "runc", "--root", n.runcRoot(), "state", id).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("runc state %s: %w: %s", id, err, out)
	}
	var st struct {
		Pid    int    `json:"pid"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return 0, fmt.Errorf("runc state %s: %w", id, err)
	}
	if st.Status != "running" || st.Pid <= 0 {
		return 0, fmt.Errorf("container %s is %s", id, st.Status)
	}
	return st.Pid, nil
}

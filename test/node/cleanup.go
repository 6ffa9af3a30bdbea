package node

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Stop ends kubelet, every container, containerd and its shims, unmounts
// what the node mounted, removes its cgroups, the Node object and the temp
// dir, and restores the kernel settings kubelet changed. It is idempotent
// and goes on after errors, returning them all.
func (n *Node) Stop() error {
	if n.stopped {
		return nil
	}
	n.stopped = true
	var errs []error
	if n.kubelet != nil {
		errs = append(errs, n.kubelet.Stop())
	}
	errs = append(errs, n.removeContainers())
	if n.containerd != nil {
		errs = append(errs, n.containerd.Stop())
	}
	errs = append(errs, n.killShims())
	errs = append(errs, n.unmountAll())
	errs = append(errs, n.removeCgroups())
	restoreSysctls(n.sysctls)
	if n.kubelet != nil {
		errs = append(errs, n.deleteNodeObject())
	}
	if os.Getenv("E2E_KEEP_NODE") == "" {
		errs = append(errs, os.RemoveAll(n.dir))
	}
	return errors.Join(errs...)
}

// runcRoot is where the shims keep runc's state of this node's containers.
func (n *Node) runcRoot() string { return filepath.Join(n.dir, "runc", "k8s.io") }

// removeContainers force-deletes every runc container of this node: runc
// kills its processes and removes its cgroups.
func (n *Node) removeContainers() error {
	entries, err := os.ReadDir(n.runcRoot())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, "runc", "--root", n.runcRoot(), "delete", "--force", e.Name()).CombinedOutput()
		cancel()
		if err != nil && !strings.Contains(string(out), "does not exist") {
			errs = append(errs, fmt.Errorf("runc delete %s: %w: %s", e.Name(), err, out))
		}
	}
	return errors.Join(errs...)
}

// killShims kills the containerd shims of this node: they leave containerd's
// process group on purpose (to survive its restarts), so its Stop does not
// reach them. They are found by the containerd address in their arguments.
func (n *Node) killShims() error {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	addr := n.ContainerdSocket()
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(raw), "\x00")
		if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for i := range args {
			if args[i] == "-address" && i+1 < len(args) && args[i+1] == addr {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
		}
	}
	return nil
}

// unmountAll detaches every mount under the node's dir (container root
// filesystems, emptyDirs, projected service account tokens, kubelet's own
// bind mount of its root dir), deepest first.
func (n *Node) unmountAll() error {
	var errs []error
	for range 3 { // a mount may hide another at the same point
		points, err := mountsUnder(n.dir)
		if err != nil {
			return err
		}
		if len(points) == 0 {
			return nil
		}
		errs = errs[:0]
		for _, p := range points {
			if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
			}
		}
	}
	return errors.Join(errs...)
}

func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close() //nolint:errcheck // read-only
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMountPath(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	return points, sc.Err()
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupHierarchies lists the mounted cgroup v1 hierarchies.
func cgroupHierarchies() []string {
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return nil
	}
	var hs []string
	for _, e := range entries {
		p := filepath.Join("/sys/fs/cgroup", e.Name())
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			hs = append(hs, p)
		}
	}
	return hs
}

// removeCgroups removes the node's cgroup parent, and everything below it,
// in every hierarchy (deepest first: cgroup directories go with rmdir).
func (n *Node) removeCgroups() error {
	var errs []error
	for _, h := range cgroupHierarchies() {
		root := filepath.Join(h, n.cgroupName)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// kubeletSysctls are the kernel settings kubelet sets at start
// (protectKernelDefaults: false, the default). They are global, so the node
// puts back what it found.
var kubeletSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// sysctlsFile keeps the values found before the first kubelet, until they
// are put back: a test binary killed outright (no cleanup runs) leaves
// kubelet's values set, and the next node must not take those as the
// machine's own.
var sysctlsFile = filepath.Join(os.TempDir(), "e2e-node-sysctls.json")

func readSysctls() map[string]string {
	if raw, err := os.ReadFile(sysctlsFile); err == nil {
		m := map[string]string{}
		if json.Unmarshal(raw, &m) == nil && len(m) > 0 {
			return m
		}
	}
	m := map[string]string{}
	for _, k := range kubeletSysctls {
		if v, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil {
			m[k] = strings.TrimSpace(string(v))
		}
	}
	if raw, err := json.Marshal(m); err == nil {
		_ = os.WriteFile(sysctlsFile, raw, 0o644)
	}
	return m
}

func restoreSysctls(m map[string]string) {
	if len(m) == 0 {
		return
	}
	for k, v := range m {
		_ = os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644)
	}
	_ = os.Remove(sysctlsFile)
}

// freeLoopbackPorts finds n free TCP ports on 127.0.0.1.
func freeLoopbackPorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

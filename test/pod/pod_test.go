// Package pod runs the sidecar where users run it: as a container of the
// LINSTOR CSI controller pod, on a real kubelet node (package node), in the
// Deployment Piraeus Operator v2 creates, with the container, probes,
// resources and securityContext of patches/linstorcluster-sidecar.yaml
// strategic-merged in as the operator does, and nothing of its own: the
// operator's service account and RBAC, its TLS Secret, the pod's socket
// emptyDir. Everything the host-process tests of package e2e cannot see:
// the uid and capabilities the socket is opened with, a read-only root
// filesystem, the liveness probe, logs read through the API server, the
// kubelet's restarts and deletions.
package pod

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// leasePrefix starts the name of the sidecar's leader Lease (its component
// name, then the driver's name as csi-lib-utils leaderelection spells it).
const leasePrefix = "linstor-affinity-sidecar-"

// minSteady is how long the sidecar must run in the pod without a restart.
const minSteady = 2 * time.Minute

// TestCSIControllerPod runs the scenarios in one pod, in order: what is
// enforced on the container, its logs, a repair with zero configuration,
// the driver container restarting under it, the steady state, and the
// pod's deletion with a successor taking over.
func TestCSIControllerPod(t *testing.T) {
	skipUnlessRealNode(t)
	began := time.Now()
	pb := startPodBed(t)
	readyAt := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	pod := pb.onlyPod(ctx, t)

	t.Run("SecurityContextIsEnforced", func(t *testing.T) {
		pb.checkSecurityContext(ctx, t, pod)
	})
	t.Run("LogsInTheCSIPodNameTheirSourcesAndNoSecret", func(t *testing.T) {
		pb.checkLogs(ctx, t, pod.Name)
	})
	t.Run("RepairsAStrictVolumeWithZeroConfiguration", func(t *testing.T) {
		pb.checkRepair(ctx, t, "zc-1", "n1", "n3")
		step(t, began, "PV of zc-1 repaired by the sidecar in the pod")
	})
	t.Run("DriverContainerRestartDoesNotRestartTheSidecar", func(t *testing.T) {
		pb.checkDriverRestart(ctx, t, pod.Name)
		step(t, began, "linstor-csi restarted; the sidecar reconnected and repaired again")
	})
	t.Run("MemoryLimitHoldsAt10000PVs", func(t *testing.T) {
		pb.checkMemoryAtScale(ctx, t, pod.Name, scalePVs)
		step(t, began, "%d PVs cached and read in full within the memory limit", scalePVs)
	})
	t.Run("SidecarRunsWithoutRestartForTwoMinutes", func(t *testing.T) {
		if wait := time.Until(readyAt.Add(minSteady)); wait > 0 {
			t.Logf("waiting %v more to cover %v since Ready", wait.Round(time.Second), minSteady)
			time.Sleep(wait)
		}
		p, err := pb.Kube.CoreV1().Pods(testbed.ControllerNamespace).Get(ctx, pod.Name, metav1.GetOptions{})
		must(t, err)
		cs := containerStatus(p, sidecarName)
		if cs == nil || cs.RestartCount != 0 || cs.State.Running == nil || !cs.Ready {
			t.Fatalf("after %v the sidecar's status is %+v, want running, ready, restartCount 0", time.Since(readyAt).Round(time.Second), cs)
		}
		if podState(p) != "ready" {
			t.Errorf("pod %s: %s", p.Name, podState(p))
		}
		// The patch's memory limit is the container's cgroup limit; log
		// what the sidecar used at this (tiny) scale beside it.
		limit := p.Spec.Containers[containerIndex(p, sidecarName)].Resources.Limits.Memory().Value()
		pid, err := pb.Node.ContainerPID(ctx, cs.ContainerID)
		must(t, err)
		cgLimit, peak, err := memoryCgroup(pid)
		must(t, err)
		t.Logf("sidecar memory cgroup: limit %d MiB, peak usage %.1f MiB (patch limit %d MiB)", cgLimit>>20, float64(peak)/(1<<20), limit>>20)
		if cgLimit != limit {
			t.Errorf("the sidecar's memory cgroup limit is %d, the patch says %d", cgLimit, limit)
		}
		step(t, began, "sidecar running %v since the pod was Ready, restartCount 0", time.Since(readyAt).Round(time.Second))
	})
	t.Run("DeletedPodReleasesTheLeaseAndASuccessorTakesOver", func(t *testing.T) {
		pb.checkDeletion(ctx, t, pod.Name)
		step(t, began, "successor pod leads")
	})
	t.Run("AnotherUIDIsLockedOutOfTheDriverSocket", func(t *testing.T) {
		pb.checkOtherUIDLockedOut(ctx, t)
		step(t, began, "uid 1000 (the first patch's) gets EACCES on the driver's socket")
	})
}

// checkOtherUIDLockedOut runs the pod again with the securityContext the
// first version of the patch had (runAsNonRoot, runAsUser: 1000) and shows
// why it changed: the sidecar never reaches the driver (it gives up after
// --timeout and kubelet restarts it, as before), and now its log says why:
// permission denied on the socket.
func (pb *podBed) checkOtherUIDLockedOut(ctx context.Context, t *testing.T) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	deployments := pb.Kube.AppsV1().Deployments(testbed.ControllerNamespace)
	must(t, deployments.Delete(ctx, pb.Deployment.Name, metav1.DeleteOptions{PropagationPolicy: ptrTo(metav1.DeletePropagationForeground)}))
	err := testbed.Poll(ctx, "CSI controller pods gone", func(ctx context.Context) (bool, string) {
		list, err := pb.Kube.CoreV1().Pods(testbed.ControllerNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		_, err = deployments.Get(ctx, pb.Deployment.Name, metav1.GetOptions{})
		return len(list.Items) == 0 && testbedNotFound(err), fmt.Sprintf("%d pods", len(list.Items))
	})
	must(t, err)
	d, err := testbed.ApplySidecarPodTemplate(testbed.OperatorCSIControllerDeployment(pb.Sim.URL()))
	must(t, err)
	testbed.ForceEdits(d, pb.Edits)
	c := &d.Spec.Template.Spec.Containers[containerIndex(&corev1.Pod{Spec: d.Spec.Template.Spec}, sidecarName)]
	c.SecurityContext.RunAsUser, c.SecurityContext.RunAsNonRoot = ptrTo[int64](1000), ptrTo(true)
	_, err = deployments.Create(ctx, d, metav1.CreateOptions{})
	must(t, err)
	var line string
	err = testbed.Poll(ctx, "sidecar as uid 1000 says why it waits", func(ctx context.Context) (bool, string) {
		pods, err := pb.pods(ctx)
		if err != nil || len(pods) == 0 {
			return false, fmt.Sprint("no pod yet ", err)
		}
		l, err := pb.podLog(ctx, pods[0].Name, sidecarName, false)
		if err != nil {
			return false, err.Error()
		}
		for _, ln := range strings.Split(l, "\n") {
			if strings.Contains(ln, "permission denied") {
				line = ln
				return true, ""
			}
		}
		return false, podState(&pods[0])
	})
	must(t, err)
	t.Logf("as uid 1000: %s", line)
	pods, err := pb.pods(ctx)
	must(t, err)
	l, err := pb.podLog(ctx, pods[0].Name, sidecarName, false)
	must(t, err)
	if strings.Contains(l, "CSI driver found") {
		t.Errorf("as uid 1000 the sidecar reached the driver; the socket's mode no longer needs root:\n%s", l)
	}
}

func ptrTo[T any](v T) *T { return &v }

// onlyPod returns the one pod of the Deployment.
func (pb *podBed) onlyPod(ctx context.Context, t *testing.T) *corev1.Pod {
	t.Helper()
	pods, err := pb.pods(ctx)
	must(t, err)
	if len(pods) != 1 {
		t.Fatalf("%d pods of the Deployment, want 1", len(pods))
	}
	return &pods[0]
}

// checkSecurityContext reads, from the host, the credentials and mounts of
// the sidecar's process: the uid the patch gives it (root, the image's
// user, like linstor-csi beside it: the socket is srwxr-xr-x root root), no
// capability in any set, no_new_privs, and a read-only root filesystem. The
// sidecar reached the driver through the socket with exactly these.
func (pb *podBed) checkSecurityContext(ctx context.Context, t *testing.T, pod *corev1.Pod) {
	for _, name := range []string{sidecarName, "linstor-csi"} {
		cs := containerStatus(pod, name)
		if cs == nil {
			t.Fatalf("no status of container %s", name)
		}
		pid, err := pb.Node.ContainerPID(ctx, cs.ContainerID)
		must(t, err)
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		must(t, err)
		fields := procStatus(string(status))
		t.Logf("%s (pid %d): Uid %s, Gid %s, CapEff %s, CapBnd %s, NoNewPrivs %s", name, pid, fields["Uid"], fields["Gid"], fields["CapEff"], fields["CapBnd"], fields["NoNewPrivs"])
		if uid := strings.Fields(fields["Uid"]); len(uid) == 0 || uid[0] != "0" {
			t.Errorf("%s runs as uid %v, want 0", name, uid)
		}
		for _, set := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
			if fields[set] != "0000000000000000" {
				t.Errorf("%s: %s = %s, want no capability", name, set, fields[set])
			}
		}
		if name == sidecarName && fields["NoNewPrivs"] != "1" {
			t.Errorf("%s: NoNewPrivs = %s, want 1 (allowPrivilegeEscalation: false)", name, fields["NoNewPrivs"])
		}
		ro, err := rootReadOnly(pid)
		must(t, err)
		if !ro {
			t.Errorf("%s: root filesystem is writable", name)
		}
	}
	// The socket as the driver made it: srwxr-xr-x root root, so only root
	// may connect; the sidecar did (its log says it found the driver).
	socket := filepath.Join(fmt.Sprintf("/proc/%d/root", mustPID(ctx, t, pb, pod, "linstor-csi")), "csi", "csi.sock")
	var fi os.FileInfo
	err := testbed.Poll(ctx, "driver socket", func(context.Context) (bool, string) {
		var err error
		fi, err = os.Stat(socket)
		return err == nil, fmt.Sprint(err)
	})
	must(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	t.Logf("driver socket /csi/csi.sock: %v uid %d gid %d", fi.Mode(), st.Uid, st.Gid)
	if st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
		t.Errorf("the driver's socket is %v owned by %d; the security context was chosen for srwxr-xr-x root", fi.Mode(), st.Uid)
	}
}

func mustPID(ctx context.Context, t *testing.T, pb *podBed, pod *corev1.Pod, name string) int {
	t.Helper()
	pid, err := pb.Node.ContainerPID(ctx, containerStatus(pod, name).ContainerID)
	must(t, err)
	return pid
}

// procStatus parses /proc/<pid>/status.
func procStatus(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// rootReadOnly reports whether the process's "/" is mounted read-only.
func rootReadOnly(pid int) (bool, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			return strings.Contains(","+f[5]+",", ",ro,"), nil
		}
	}
	return false, fmt.Errorf("pid %d: no / in mountinfo", pid)
}

// checkLogs reads the sidecar's log as `kubectl logs -c` would: it says
// where each LINSTOR setting came from (the linstor-csi container's env and
// the Secret behind it) and holds no part of the TLS material.
func (pb *podBed) checkLogs(ctx context.Context, t *testing.T, pod string) {
	var log string
	err := testbed.Poll(ctx, "sidecar log names its settings", func(ctx context.Context) (bool, string) {
		l, err := pb.podLog(ctx, pod, sidecarName, false)
		if err != nil {
			return false, err.Error()
		}
		log = l
		return strings.Contains(l, "Caches synced"), "no \"Caches synced\" yet"
	})
	must(t, err)
	where := "container linstor-csi of pod " + testbed.ControllerNamespace + "/" + pod
	wantLines := map[string][]string{
		"LS_CONTROLLERS":      {pb.Sim.URL(), "env LS_CONTROLLERS of " + where},
		"LS_ROOT_CA":          {"secret " + testbed.ControllerNamespace + "/" + testbed.ControllerTLSSecret + " key ca.crt"},
		"LS_USER_CERTIFICATE": {"secret " + testbed.ControllerNamespace + "/" + testbed.ControllerTLSSecret + " key tls.crt"},
		"LS_USER_KEY":         {"secret " + testbed.ControllerNamespace + "/" + testbed.ControllerTLSSecret + " key tls.key"},
	}
	for setting, parts := range wantLines {
		found := false
		for _, line := range strings.Split(log, "\n") {
			if !strings.Contains(line, "LINSTOR setting taken from the CSI container") || !strings.Contains(line, `setting="`+setting+`"`) {
				continue
			}
			found = true
			for _, p := range parts {
				if !strings.Contains(line, p) {
					t.Errorf("%s line %q does not say %q", setting, line, p)
				}
			}
		}
		if !found {
			t.Errorf("no log line says where %s came from", setting)
		}
	}
	if !strings.Contains(log, "Property namespace taken from the CSI container") || !strings.Contains(log, testbed.PropertyNamespace) {
		t.Errorf("the log does not say the property namespace came from the CSI container")
	}
	if strings.Contains(log, "-----BEGIN") || strings.Contains(log, "PRIVATE KEY") {
		t.Errorf("sidecar log contains PEM material")
	}
	for name, pem := range map[string][]byte{"key": pb.TLS.Key, "certificate": pb.TLS.Cert, "CA": pb.TLS.CA} {
		for _, frag := range pemFragments(pem) {
			if strings.Contains(log, frag) {
				t.Errorf("sidecar log contains part of the %s (%q)", name, frag)
			}
		}
	}
	var shown []string
	for _, line := range strings.Split(log, "\n") {
		for _, m := range []string{"Starting", "taken from the CSI container", "CSI driver found", "Caches synced", "Acting as leader"} {
			if strings.Contains(line, m) {
				shown = append(shown, line)
				break
			}
		}
	}
	t.Logf("kubectl logs %s -c %s (%d bytes), its start:\n%s", pod, sidecarName, len(log), strings.Join(shown, "\n"))
}

// pemFragments returns 24-character pieces of a PEM block's base64 body.
func pemFragments(pem []byte) []string {
	var body strings.Builder
	for _, line := range strings.Split(string(pem), "\n") {
		if strings.HasPrefix(line, "-----") {
			continue
		}
		body.WriteString(strings.TrimSpace(line))
	}
	b := body.String()
	if _, err := base64.StdEncoding.DecodeString(b); err != nil {
		return nil
	}
	var out []string
	for i := 0; i+24 <= len(b); i += 200 {
		out = append(out, b[i:i+24])
	}
	return out
}

// checkRepair provisions a strict volume through the pod's provisioner and
// driver, moves its replica, starts a pod on the claim pinned to the new
// node (which the scheduler cannot place there), and waits until the sidecar in the pod has rewritten the
// PV's affinity (after the patch's default grace period for new PVs) with
// its claim still bound, and the pod is scheduled. With the patch's
// defaults the full LINSTOR read comes every 2 minutes: the blocked pod is
// what gets its volume read and repaired.
func (pb *podBed) checkRepair(ctx context.Context, t *testing.T, claim, from, to string) {
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	pvs, err := pb.ProvisionVolumes(wctx, testbed.Claim{Name: claim, StorageClass: "strict", Node: from})
	must(t, err)
	pv := pvs[claim]
	must(t, pb.Sim.MoveReplica(pv.Spec.CSI.VolumeHandle, from, to))
	t.Logf("replica of %s moved %s -> %s", pv.Spec.CSI.VolumeHandle, from, to)
	// The pod asks for the node that now holds the data (as a pod pinned to
	// a node would, or any pod once the old node is gone): the stale PV
	// affinity is what blocks it.
	pod := "user-of-" + claim
	if _, err := pb.CreatePod(ctx, pod, claim, map[string]string{testbed.HostnameKey: to}); err != nil {
		t.Fatal(err)
	}
	if _, err := pb.WaitPVAffinity(wctx, pv.Name, testbed.Hosts(to)...); err != nil {
		t.Fatal(err)
	}
	if _, err := pb.WaitClaimBound(wctx, claim, pv.Name); err != nil {
		t.Fatal(err)
	}
	node, err := pb.WaitPodScheduled(wctx, pod)
	must(t, err)
	if node != to {
		t.Fatalf("pod %s scheduled on %s, its volume is on %s", pod, node, to)
	}
	// What a user sees: kubectl logs -c linstor-affinity-sidecar.
	pods, err := pb.pods(ctx)
	must(t, err)
	for _, p := range pods {
		l, err := pb.podLog(ctx, p.Name, sidecarName, false)
		must(t, err)
		var lines []string
		for _, line := range strings.Split(l, "\n") {
			if strings.Contains(line, pv.Name) {
				lines = append(lines, line)
			}
		}
		t.Logf("kubectl logs %s -c %s | grep %s:\n%s", p.Name, sidecarName, pv.Name, strings.Join(lines, "\n"))
		if len(lines) == 0 {
			t.Errorf("the sidecar's log in pod %s does not mention the PV it repaired", p.Name)
		}
	}
}

// checkDriverRestart kills the linstor-csi container's process. kubelet
// restarts that container; the sidecar must wait for the socket to come
// back, reconnect and go on repairing, without a restart of its own.
func (pb *podBed) checkDriverRestart(ctx context.Context, t *testing.T, podName string) {
	p, err := pb.Kube.CoreV1().Pods(testbed.ControllerNamespace).Get(ctx, podName, metav1.GetOptions{})
	must(t, err)
	before := containerStatus(p, "linstor-csi").RestartCount
	pid := mustPID(ctx, t, pb, p, "linstor-csi")
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	t.Logf("killed linstor-csi (pid %d)", pid)
	err = testbed.Poll(ctx, "linstor-csi restarted", func(ctx context.Context) (bool, string) {
		p, err := pb.Kube.CoreV1().Pods(testbed.ControllerNamespace).Get(ctx, podName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		cs := containerStatus(p, "linstor-csi")
		return cs.RestartCount > before && cs.State.Running != nil, podState(p)
	})
	must(t, err)
	pb.checkRepair(ctx, t, "zc-2", "n2", "n4")
	p, err = pb.Kube.CoreV1().Pods(testbed.ControllerNamespace).Get(ctx, podName, metav1.GetOptions{})
	must(t, err)
	if cs := containerStatus(p, sidecarName); cs.RestartCount != 0 {
		prev, _ := pb.podLog(ctx, podName, sidecarName, true)
		t.Fatalf("the sidecar restarted %d times when the driver did; its previous log:\n%s", cs.RestartCount, prev)
	}
}

// checkDeletion deletes the pod as kubectl delete pod does (the default
// grace period) and watches: the sidecar must exit 0 within the grace
// period, the Lease must be released (empty holder) rather than left to
// expire, and the Deployment's next pod must become Ready and lead.
func (pb *podBed) checkDeletion(ctx context.Context, t *testing.T, podName string) {
	pods := pb.Kube.CoreV1().Pods(testbed.ControllerNamespace)
	leases := pb.Kube.CoordinationV1().Leases(testbed.ControllerNamespace)
	var leaseName string
	list, err := leases.List(ctx, metav1.ListOptions{})
	must(t, err)
	for _, l := range list.Items {
		if strings.HasPrefix(l.Name, leasePrefix) {
			leaseName = l.Name
		}
	}
	if leaseName == "" {
		t.Fatalf("no Lease %s* in %s", leasePrefix, testbed.ControllerNamespace)
	}
	lease, err := leases.Get(ctx, leaseName, metav1.GetOptions{})
	must(t, err)
	oldHolder := holder(lease)
	if !strings.HasPrefix(oldHolder, podName) {
		t.Fatalf("lease %s held by %q, want the pod %s", leaseName, oldHolder, podName)
	}
	p, err := pods.Get(ctx, podName, metav1.GetOptions{})
	must(t, err)
	grace := time.Duration(*p.Spec.TerminationGracePeriodSeconds) * time.Second

	deleted := time.Now()
	must(t, pods.Delete(ctx, podName, metav1.DeleteOptions{}))
	var exit *corev1.ContainerStateTerminated
	released, gone := false, time.Duration(0)
	err = testbed.Poll(ctx, "old pod gone", func(ctx context.Context) (bool, string) {
		if l, err := leases.Get(ctx, leaseName, metav1.GetOptions{}); err == nil && holder(l) == "" {
			released = true
		}
		p, err := pods.Get(ctx, podName, metav1.GetOptions{})
		if testbedNotFound(err) {
			gone = time.Since(deleted)
			return true, ""
		}
		if err != nil {
			return false, err.Error()
		}
		if cs := containerStatus(p, sidecarName); cs != nil && cs.State.Terminated != nil {
			exit = cs.State.Terminated
		}
		return false, podState(p)
	})
	must(t, err)
	t.Logf("pod %s gone %v after the delete (grace %v)", podName, gone.Round(time.Millisecond), grace)
	if exit == nil {
		t.Errorf("never saw the sidecar's terminated state before the pod was removed")
	} else {
		t.Logf("sidecar exited: %s, exit code %d, finished %v after the delete", exit.Reason, exit.ExitCode, exit.FinishedAt.Sub(deleted).Round(time.Second))
		if exit.ExitCode != 0 {
			t.Errorf("sidecar exit code %d on SIGTERM, want 0", exit.ExitCode)
		}
	}
	if gone > grace {
		t.Errorf("the pod took %v to go, longer than its grace period %v: something was killed", gone, grace)
	}
	if !released {
		l, _ := leases.Get(ctx, leaseName, metav1.GetOptions{})
		t.Errorf("the Lease was never seen released (holder now %q)", holder(l))
	}

	next, err := pb.waitPodReady(ctx, podName)
	must(t, err)
	err = testbed.Poll(ctx, "successor leads", func(ctx context.Context) (bool, string) {
		l, err := leases.Get(ctx, leaseName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return strings.HasPrefix(holder(l), next.Name), "holder " + holder(l)
	})
	must(t, err)
	t.Logf("pod %s leads %v after the delete", next.Name, time.Since(deleted).Round(time.Millisecond))
}

func holder(l *coordinationv1.Lease) string {
	if l == nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func containerIndex(p *corev1.Pod, name string) int {
	for i, c := range p.Spec.Containers {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// memoryCgroup reads the cgroup v1 memory limit and peak usage of pid.
func memoryCgroup(pid int) (limit, peak int64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return 0, 0, err
	}
	var path string
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && strings.Contains(","+f[1]+",", ",memory,") {
			path = f[2]
		}
	}
	if path == "" {
		return 0, 0, fmt.Errorf("pid %d: no memory cgroup", pid)
	}
	read := func(name string) (int64, error) {
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", path, name))
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	if limit, err = read("memory.limit_in_bytes"); err != nil {
		return 0, 0, err
	}
	peak, err = read("memory.max_usage_in_bytes")
	return limit, peak, err
}

// scalePVs is how many PVs the memory check adds: the patch's limit is sized
// for 10,000 (README, "Memory").
const scalePVs = 10000

// memoryMargin: the sidecar's peak at scalePVs must stay below this share
// of the patch's limit.
const memoryMargin = 0.75

// checkMemoryAtScale adds n in-sync volumes (LINSTOR and PVs) to the bed,
// waits until the sidecar in the pod has cached them and read LINSTOR in
// full with them, and checks the peak memory of its container's cgroup
// against the patch's limit with a margin. It logs the cost per PV.
func (pb *podBed) checkMemoryAtScale(ctx context.Context, t *testing.T, podName string, n int) {
	p, err := pb.Kube.CoreV1().Pods(testbed.ControllerNamespace).Get(ctx, podName, metav1.GetOptions{})
	must(t, err)
	cs := containerStatus(p, sidecarName)
	if cs == nil {
		t.Fatal("no sidecar container status")
	}
	pid, err := pb.Node.ContainerPID(ctx, cs.ContainerID)
	must(t, err)
	limit := p.Spec.Containers[containerIndex(p, sidecarName)].Resources.Limits.Memory().Value()
	_, before, err := memoryCgroup(pid)
	must(t, err)
	metricsURL := "http://127.0.0.1:9813/metrics"
	m, err := testbed.ScrapeMetrics(ctx, metricsURL)
	must(t, err)
	reads := m.Sum("linstor_affinity_sidecar_linstor_fetch_duration_seconds_count", nil)

	began := time.Now()
	nodes := []string{"n1", "n2", "n3", "n4"}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("pvc-scale-%05d", i)
		on := []string{nodes[i%4], nodes[(i+1)%4]}
		must(t, pb.Sim.CreateVolume(linstorsim.VolumeSpec{Name: names[i], Diskful: on}))
	}
	sem := make(chan struct{}, 16)
	errs := make(chan error, n)
	for i, name := range names {
		sem <- struct{}{}
		go func(i int, name string) {
			defer func() { <-sem }()
			on := []string{nodes[i%4], nodes[(i+1)%4]}
			errs <- pb.createScalePV(ctx, name, on)
		}(i, name)
	}
	for range names {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d volumes and PVs created in %v", n, time.Since(began).Round(time.Second))
	// The next full read (every 2 minutes by default) decodes LINSTOR's
	// answers for all of them: the peak comes then.
	wctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	err = testbed.Poll(wctx, "a full read with every PV cached", func(ctx context.Context) (bool, string) {
		m, err := testbed.ScrapeMetrics(ctx, metricsURL)
		if err != nil {
			return false, err.Error()
		}
		inSync := m.Sum("linstor_affinity_sidecar_pvs", map[string]string{"status": "in-sync"})
		done := m.Sum("linstor_affinity_sidecar_linstor_fetch_duration_seconds_count", nil) > reads && inSync >= float64(n)
		return done, fmt.Sprintf("%v PVs in sync", inSync)
	})
	must(t, err)
	_, peak, err := memoryCgroup(pid)
	must(t, err)
	perPV := float64(peak-before) / float64(n)
	t.Logf("sidecar memory cgroup at %d PVs: peak %.1f MiB (before them %.1f MiB; %.1f KiB per PV), limit %d MiB",
		n, float64(peak)/(1<<20), float64(before)/(1<<20), perPV/1024, limit>>20)
	if float64(peak) > memoryMargin*float64(limit) {
		t.Errorf("peak memory %.1f MiB at %d PVs is more than %.0f%% of the patch's limit (%d MiB)",
			float64(peak)/(1<<20), n, memoryMargin*100, limit>>20)
	}
}

// createScalePV creates a PV for the volume name as the external-provisioner
// would (strict, in sync with its replicas on nodes), bound to a claim that
// does not exist (no PV binder work beyond marking it Available).
func (pb *podBed) createScalePV(ctx context.Context, name string, nodes []string) error {
	fs := corev1.PersistentVolumeFilesystem
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": testbed.DriverName}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              "strict",
			VolumeMode:                    &fs,
			NodeAffinity:                  testbed.AffinityOf(testbed.Hosts(nodes...)...),
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: testbed.DriverName, VolumeHandle: name, FSType: "ext4",
			}},
		},
	}
	_, err := pb.Kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create PV %s: %w", name, err)
	}
	return nil
}

package cluster

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/LINBIT/golinstor/fakelinstor"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const hostnameKey = "kubernetes.io/hostname"

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a real control plane; drop -short (binaries from `make tools`)")
	}
}

func hostAffinity(nodes ...string) *corev1.VolumeNodeAffinity {
	return &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{
				Key: hostnameKey, Operator: corev1.NodeSelectorOpIn, Values: nodes,
			}},
		}},
	}}
}

func csiPV(name, size string, affinity *corev1.VolumeNodeAffinity) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              "",
			NodeAffinity:                  affinity,
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: "linstor.csi.linbit.com", VolumeHandle: name,
			}},
		},
	}
}

func claim(name, size, volumeName string) *corev1.PersistentVolumeClaim {
	empty := ""
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceDefault},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &empty,
			VolumeName:       volumeName,
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			},
		},
	}
}

func podWithClaim(name, claimName string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceDefault},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claimName},
			}}},
		},
	}
}

// poll retries f every 100ms until it reports done, fails, or timeout passes.
func poll(t *testing.T, timeout time.Duration, what string, f func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, err := f()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func create[T any](t *testing.T, what string, f func() (T, error)) T {
	t.Helper()
	obj, err := f()
	if err != nil {
		t.Fatalf("create %s: %v", what, err)
	}
	return obj
}

// conflictReported tells whether the scheduler gave up on a pod because of
// its volume's node affinity.
func conflictReported(conds []corev1.PodCondition) bool {
	for _, c := range conds {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse &&
			strings.Contains(c.Message, "didn't match PersistentVolume's node affinity") {
			return true
		}
	}
	return false
}

// waitPodOn waits until the scheduler has bound pod to node; it fails at
// once on any other node and explains a timeout with the pod's conditions.
func waitPodOn(ctx context.Context, t *testing.T, cs kubernetes.Interface, pod, node string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p, err := cs.CoreV1().Pods("default").Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get pod %s: %v", pod, err)
		}
		switch p.Spec.NodeName {
		case node:
			return
		case "":
		default:
			t.Fatalf("pod %s scheduled onto %s, want %s", pod, p.Spec.NodeName, node)
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s not scheduled onto %s within %v; conditions %+v", pod, node, timeout, p.Status.Conditions)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// assertNoProcessLeft checks /proc: no live process remains in any group the
// cluster started.
func assertNoProcessLeft(t *testing.T, pgids []int) {
	t.Helper()
	for _, g := range pgids {
		if left := liveGroupMembers(t, g); len(left) > 0 {
			t.Errorf("process group %d still has live members %v after Stop", g, left)
		}
	}
}

func TestControlPlaneBindsSchedulesAndAllowsMutableAffinity(t *testing.T) {
	skipShort(t)
	c := StartT(t, Options{MutablePVNodeAffinity: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := c.Client()

	t.Run("APIServerAnswersThroughTheKubeconfig", func(t *testing.T) {
		cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig())
		if err != nil {
			t.Fatalf("load %s: %v", c.Kubeconfig(), err)
		}
		if !strings.HasPrefix(cfg.Host, "https://127.0.0.1:") {
			t.Fatalf("kubeconfig server %q is not on loopback", cfg.Host)
		}
		kc, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ns, err := kc.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{})
		if err != nil || ns.Name != metav1.NamespaceDefault {
			t.Fatalf("get namespace default through the kubeconfig: %v", err)
		}
		if _, err := kc.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{}); err != nil {
			t.Fatalf("default service account: %v", err)
		}
		body, err := kc.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil || string(body) != "ok" {
			t.Fatalf("/readyz = %q, %v", body, err)
		}
	})

	for _, n := range []string{"n1", "n2"} {
		node, err := CreateReadyNode(ctx, cs, n, map[string]string{"topology.kubernetes.io/zone": "z-" + n})
		if err != nil {
			t.Fatal(err)
		}
		if len(node.Spec.Taints) != 0 || node.Labels[hostnameKey] != n || node.Labels["topology.kubernetes.io/zone"] != "z-"+n {
			t.Fatalf("node %s: taints %v labels %v", n, node.Spec.Taints, node.Labels)
		}
	}

	t.Run("ControllerManagerBindsAClaimToAMatchingPV", func(t *testing.T) {
		create(t, "pv", func() (*corev1.PersistentVolume, error) {
			return cs.CoreV1().PersistentVolumes().Create(ctx, csiPV("pv-bind", "1Gi", nil), metav1.CreateOptions{})
		})
		create(t, "pvc", func() (*corev1.PersistentVolumeClaim, error) {
			return cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, claim("claim-bind", "1Gi", ""), metav1.CreateOptions{})
		})
		poll(t, time.Minute, "claim-bind bound to pv-bind", func() (bool, error) {
			pvc, err := cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, "claim-bind", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return pvc.Status.Phase == corev1.ClaimBound && pvc.Spec.VolumeName == "pv-bind", nil
		})
		pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, "pv-bind", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.Name != "claim-bind" {
			t.Fatalf("pv-bind claimRef = %+v, want default/claim-bind", pv.Spec.ClaimRef)
		}
	})

	t.Run("SchedulerFollowsPVNodeAffinity", func(t *testing.T) {
		// n3 does not exist: that pod must stay pending on a volume conflict,
		// which proves the placements below are the scheduler's, not luck.
		for _, target := range []string{"n2", "n1", "n3"} {
			pv, pvc, pod := "pv-"+target, "claim-"+target, "pod-"+target
			create(t, "pv", func() (*corev1.PersistentVolume, error) {
				return cs.CoreV1().PersistentVolumes().Create(ctx, csiPV(pv, "2Gi", hostAffinity(target)), metav1.CreateOptions{})
			})
			create(t, "pvc", func() (*corev1.PersistentVolumeClaim, error) {
				return cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, claim(pvc, "2Gi", pv), metav1.CreateOptions{})
			})
			create(t, "pod", func() (*corev1.Pod, error) {
				return cs.CoreV1().Pods("default").Create(ctx, podWithClaim(pod, pvc), metav1.CreateOptions{})
			})
		}
		for _, target := range []string{"n2", "n1"} {
			waitPodOn(ctx, t, cs, "pod-"+target, target, time.Minute)
		}
		var last []corev1.PodCondition
		deadline := time.Now().Add(time.Minute)
		for !conflictReported(last) {
			if time.Now().After(deadline) {
				t.Fatalf("pod-n3 not reported unschedulable for its volume's affinity; conditions %+v", last)
			}
			time.Sleep(100 * time.Millisecond)
			p, err := cs.CoreV1().Pods("default").Get(ctx, "pod-n3", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if p.Spec.NodeName != "" {
				t.Fatalf("pod-n3 scheduled onto %s though its volume is on no node", p.Spec.NodeName)
			}
			last = p.Status.Conditions
		}
	})

	t.Run("GateOnAllowsChangingPVNodeAffinityInPlace", func(t *testing.T) {
		pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, "pv-n3", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pv.Spec.NodeAffinity = hostAffinity("n1")
		if _, err := cs.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("update pv-n3 affinity with the gate on: %v", err)
		}
		got, err := cs.CoreV1().PersistentVolumes().Get(ctx, "pv-n3", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if v := got.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values; len(v) != 1 || v[0] != "n1" {
			t.Fatalf("pv-n3 affinity values %v after update, want [n1]", v)
		}
		// The scheduler sees the new affinity: the stuck pod now lands on n1.
		waitPodOn(ctx, t, cs, "pod-n3", "n1", 2*time.Minute)
	})

	if t.Failed() {
		LogTails(t, c.Processes()) // before the next step removes them
	}
	t.Run("StopLeavesNoProcessAndNoFiles", func(t *testing.T) {
		var pgids []int
		for _, p := range c.Processes() {
			if p.Exited() && !p.Stopped() {
				t.Errorf("%s crashed during the test: %v", p.Name(), p.ExitErr())
			}
			pgids = append(pgids, p.Pid())
		}
		if len(pgids) != 4 {
			t.Fatalf("cluster started %d processes, want etcd, apiserver, controller manager, scheduler", len(pgids))
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		assertNoProcessLeft(t, pgids)
		if _, err := os.Stat(c.Dir()); !os.IsNotExist(err) {
			t.Errorf("cluster dir %s survived Stop (%v)", c.Dir(), err)
		}
		if err := c.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
	})
}

func TestMinimalControlPlane(t *testing.T) {
	skipShort(t)
	c := StartT(t, Options{NoControllerManager: true, NoScheduler: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs := c.Client()

	t.Run("GateOffForbidsChangingPVNodeAffinity", func(t *testing.T) {
		pv := create(t, "pv", func() (*corev1.PersistentVolume, error) {
			return cs.CoreV1().PersistentVolumes().Create(ctx, csiPV("pv-fixed", "1Gi", hostAffinity("n1")), metav1.CreateOptions{})
		})
		pv.Spec.NodeAffinity = hostAffinity("n2")
		_, err := cs.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "nodeAffinity") {
			t.Fatalf("update pv affinity with the gate off = %v, want Invalid on nodeAffinity", err)
		}
	})

	t.Run("StartCreatesTheDefaultServiceAccountItself", func(t *testing.T) {
		if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			t.Fatalf("default service account: %v", err)
		}
		if n := len(c.Processes()); n != 2 {
			t.Fatalf("cluster started %d processes, want etcd and apiserver only", n)
		}
	})

	t.Run("StopEndsPeersStartedThroughTheCluster", func(t *testing.T) {
		lin := fakelinstor.New()
		t.Cleanup(lin.Server.Close)
		drv, err := c.StartLinstorCSI(ctx, LinstorCSIOptions{LinstorEndpoint: lin.Server.URL})
		if err != nil {
			SkipOrFatal(t, err)
		}
		if !strings.HasPrefix(drv.SocketPath(), c.Dir()) || c.Process("linstor-csi") != drv.Process {
			t.Fatalf("driver socket %s not in %s or not owned by the cluster", drv.SocketPath(), c.Dir())
		}
		var pgids []int
		for _, p := range c.Processes() {
			pgids = append(pgids, p.Pid())
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		if !drv.Exited() {
			t.Fatal("the driver survived the cluster's Stop")
		}
		assertNoProcessLeft(t, pgids)
	})
}

func TestStartReportsMissingBinaries(t *testing.T) {
	_, err := Start(context.Background(), Options{BinDir: t.TempDir()})
	if !errors.Is(err, ErrMissingBinary) || !strings.Contains(err.Error(), "kube-apiserver") {
		t.Fatalf("Start with an empty bin dir = %v, want ErrMissingBinary naming kube-apiserver", err)
	}
}

func TestStartTSkipsOnMissingBinariesWhenAsked(t *testing.T) {
	t.Setenv(SkipMissingEnv, "1")
	var inner *testing.T
	t.Run("cluster", func(t *testing.T) {
		inner = t
		StartT(t, Options{BinDir: t.TempDir()})
		t.Error("StartT returned without binaries")
	})
	if !inner.Skipped() {
		t.Fatalf("StartT did not skip with %s=1 and no binaries", SkipMissingEnv)
	}
}

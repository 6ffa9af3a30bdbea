package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	lapiconst "github.com/LINBIT/golinstor"
	lapi "github.com/LINBIT/golinstor/client"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
)

const (
	driverName = "linstor.csi.linbit.com"
	propNS     = "Aux/topology"
	hostKey    = "linbit.com/hostname"
	zoneKey    = "topology.kubernetes.io/zone"
	paramKey   = "linstor.csi.linbit.com/allowRemoteVolumeAccess"
	nodeCount  = 100
	zoneCount  = 5
	// departingCount LINSTOR nodes, node-100 and up, are being rotated out:
	// their Kubernetes Nodes are gone, LINSTOR places nothing new on them
	// (AutoplaceTarget=false), and the volumes with a claim start there.
	departingCount = 10
)

// policy is one of the three remote access policies of the bench's
// StorageClasses; the expected affinity of a volume is computed here,
// independently of the sidecar's code.
type policy string

const (
	strict   policy = "strict"   // allowRemoteVolumeAccess: "false"
	zonal    policy = "zone"     // fromSame: [topology.kubernetes.io/zone]
	anywhere policy = "anywhere" // "true": no affinity
)

var policyParam = map[policy]string{
	strict:   "false",
	zonal:    "- fromSame:\n  - " + zoneKey + "\n",
	anywhere: "true",
}

// volume is one bench volume: its LINSTOR resource definition, its PV and
// where its diskful replicas are. A volume with a claim has a strict policy
// and one replica, on a departing node until blockedPods moves it: a pod
// using the claim fits only the node of its replica, and none while the
// PV's affinity names the departing node.
type volume struct {
	name   string
	policy policy
	nodes  []string
	claim  bool
}

// claimName is the PVC of a volume with a claim (and the claimRef of every PV).
func (v *volume) claimName() string { return "data-" + v.name }

func nodeName(i int) string { return fmt.Sprintf("node-%03d", i) }
func zoneOf(node string) string {
	var i int
	_, _ = fmt.Sscanf(node, "node-%03d", &i)
	return fmt.Sprintf("zone-%d", i%zoneCount)
}

// expectedAffinity is what LINSTOR CSI would give a PV with these replicas.
func expectedAffinity(p policy, nodes []string) *corev1.VolumeNodeAffinity {
	var values []string
	key := hostKey
	switch p {
	case anywhere:
		return nil
	case strict:
		values = append(values, nodes...)
	case zonal:
		key = zoneKey
		seen := map[string]bool{}
		for _, n := range nodes {
			if z := zoneOf(n); !seen[z] {
				seen[z] = true
				values = append(values, z)
			}
		}
	}
	sort.Strings(values)
	terms := make([]corev1.NodeSelectorTerm, 0, len(values))
	for _, v := range values {
		terms = append(terms, corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: corev1.NodeSelectorOpIn, Values: []string{v}}}})
	}
	return &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: terms}}
}

// affinityKey is a canonical text of an affinity, for comparing as sets.
func affinityKey(a *corev1.VolumeNodeAffinity) string {
	if a == nil || a.Required == nil || len(a.Required.NodeSelectorTerms) == 0 {
		return ""
	}
	var terms []string
	for _, t := range a.Required.NodeSelectorTerms {
		var exprs []string
		for _, e := range t.MatchExpressions {
			exprs = append(exprs, e.Key+" "+string(e.Operator)+" "+strings.Join(e.Values, ","))
		}
		for _, f := range t.MatchFields {
			exprs = append(exprs, "field "+f.Key)
		}
		sort.Strings(exprs)
		terms = append(terms, strings.Join(exprs, "&"))
	}
	sort.Strings(terms)
	return strings.Join(slicesCompact(terms), "|")
}

func slicesCompact(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// bed is the bench's test bed: the real control plane (etcd, kube-apiserver
// with MutablePVNodeAffinity, kube-scheduler), the LINSTOR simulator, a
// Kubernetes Node for each LINSTOR node, N static PVs (some with a bound
// claim), and the sidecar as a separate process in standalone mode.
type bed struct {
	n         int
	cluster   *cluster.Cluster
	sim       *linstorsim.Sim
	realistic bool // the simulator runs in its realistic mode
	kube      kubernetes.Interface
	vols      []*volume
	byName    map[string]*volume
	sidecar   *sidecarProc
	binary    string
	logf      func(string, ...any)

	mu  sync.Mutex // guards rng and the volumes' nodes while moves run concurrently
	rng *rand.Rand
}

// simOptions is the one place the bench configures the simulator. It
// returns whether the realistic mode (volatile state fields and timestamps
// that change between requests, a DRBD_DELETE window, Outdated and Failed
// disks, resources without volumes left out of the view) is on, for the
// report.
func simOptions(realistic bool) (linstorsim.Options, bool) {
	return linstorsim.Options{PropertyNamespace: propNS, Realistic: realistic}, realistic
}

// startBed starts the bed with n volumes, the first claims of which have a
// claim (see volume).
func startBed(ctx context.Context, n, claims int, realistic bool, binary, logDir string, logf func(string, ...any)) (*bed, error) {
	c, err := cluster.Start(ctx, cluster.Options{MutablePVNodeAffinity: true, NoControllerManager: true, LogDir: logDir})
	if err != nil {
		return nil, err
	}
	b := &bed{n: n, cluster: c, binary: binary, logf: logf, byName: map[string]*volume{}, rng: rand.New(rand.NewPCG(uint64(n), 42))}
	cfg := c.RESTConfig()
	cfg.QPS, cfg.Burst = 2000, 4000
	if b.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		_ = c.Stop()
		return nil, err
	}
	opts, on := simOptions(realistic)
	b.sim, b.realistic = linstorsim.New(opts), on
	if err := b.sim.Start(); err != nil {
		_ = c.Stop()
		return nil, err
	}
	if err := b.populate(ctx, claims); err != nil {
		_ = b.stop()
		return nil, err
	}
	return b, nil
}

func (b *bed) stop() error {
	var errs []string
	if b.sidecar != nil {
		if err := b.sidecar.proc.Stop(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if err := b.cluster.Stop(); err != nil {
		errs = append(errs, err.Error())
	}
	if err := b.sim.Close(); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("stop bed: %s", strings.Join(errs, "; "))
	}
	return nil
}

// populate creates 100 nodes in 5 zones, in LINSTOR and as Kubernetes
// Nodes, and the departing nodes in LINSTOR only; N volumes: the first
// claims strict with one replica on a departing node and a bound claim, the
// others with 2 or 3 diskful replicas on distinct nodes (policies: half
// strict, a quarter zone, a quarter anywhere); the StorageClasses; and one
// in-sync static PV per volume.
func (b *bed) populate(ctx context.Context, claims int) error {
	start := time.Now()
	pool := linstorsim.StoragePool{Name: "thin", Provider: lapi.LVM_THIN, TotalKiB: 64 << 30}
	for i := 0; i < nodeCount+departingCount; i++ {
		name := nodeName(i)
		props := map[string]string{propNS + "/" + zoneKey: zoneOf(name)}
		if i >= nodeCount {
			props[lapiconst.KeyAutoplaceAllowTarget] = "false"
		}
		if err := b.sim.AddNode(name, props, pool); err != nil {
			return err
		}
	}
	// What the kubelet and LINSTOR CSI's node plugin would label a node
	// with: the topology the PVs' affinity names.
	if err := parallel(ctx, 8, nodeCount, func(ctx context.Context, i int) error {
		name := nodeName(i)
		_, err := cluster.CreateReadyNode(ctx, b.kube, name, map[string]string{hostKey: name, zoneKey: zoneOf(name)})
		return err
	}); err != nil {
		return err
	}
	policies := []policy{strict, strict, zonal, anywhere}
	for i := 0; i < b.n; i++ {
		v := &volume{name: fmt.Sprintf("pvc-%08d", i), policy: policies[i%len(policies)], claim: i < claims}
		if v.claim {
			v.policy, v.nodes = strict, []string{nodeName(nodeCount + i%departingCount)}
		} else {
			for _, k := range b.rng.Perm(nodeCount)[:2+i%2] {
				v.nodes = append(v.nodes, nodeName(k))
			}
		}
		sort.Strings(v.nodes)
		if err := b.sim.CreateVolume(linstorsim.VolumeSpec{Name: v.name, Diskful: v.nodes}); err != nil {
			return err
		}
		b.vols = append(b.vols, v)
		b.byName[v.name] = v
	}
	for p, param := range policyParam {
		sc := &storagev1.StorageClass{
			ObjectMeta:        metav1.ObjectMeta{Name: string(p)},
			Provisioner:       driverName,
			Parameters:        map[string]string{paramKey: param, "linstor.csi.linbit.com/storagePool": "thin"},
			VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
		}
		if _, err := b.kube.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create storage class %s: %w", p, err)
		}
	}
	b.logf("N=%d: %d LINSTOR volumes on %d nodes (and their Kubernetes Nodes) and %d departing nodes in %v", b.n, b.n, nodeCount, departingCount, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if err := parallel(ctx, 16, len(b.vols), func(ctx context.Context, i int) error { return b.createPV(ctx, b.vols[i]) }); err != nil {
		return err
	}
	b.logf("N=%d: %d static PVs (%d with a bound claim) created in %v", b.n, b.n, claims, time.Since(start).Round(time.Millisecond))
	return nil
}

// createPV creates a PV as the external-provisioner would have, bound to a
// claim, with the pv-protection finalizer the controller-manager would have
// added. No PV binder runs in the bed: a volume without a claim has only
// the claimRef; one with a claim gets its PVC first, pre-bound as the
// binder leaves it (spec.volumeName, bind-completed, phase Bound), and the
// PV's claimRef carries the claim's UID, so the scheduler's VolumeBinding
// takes the two as bound.
func (b *bed) createPV(ctx context.Context, v *volume) error {
	ref := &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: metav1.NamespaceDefault, Name: v.claimName()}
	if v.claim {
		uid, err := b.createBoundClaim(ctx, v)
		if err != nil {
			return err
		}
		ref.UID = uid
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        v.name,
			Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": driverName},
			Finalizers:  []string{"kubernetes.io/pv-protection"},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              string(v.policy),
			VolumeMode:                    ptr.To(corev1.PersistentVolumeFilesystem),
			NodeAffinity:                  expectedAffinity(v.policy, v.nodes),
			ClaimRef:                      ref,
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: driverName, VolumeHandle: v.name, FSType: "ext4",
				VolumeAttributes: map[string]string{"storage.kubernetes.io/csiProvisionerIdentity": "bench"},
			}},
		},
	}
	if _, err := b.kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create PV %s: %w", v.name, err)
	}
	return nil
}

// createBoundClaim creates v's PVC bound to its PV and returns its UID.
func (b *bed) createBoundClaim(ctx context.Context, v *volume) (types.UID, error) {
	size := corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}
	modes := []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name: v.claimName(), Namespace: metav1.NamespaceDefault,
			Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      modes,
			StorageClassName: ptr.To(string(v.policy)),
			VolumeName:       v.name,
			Resources:        corev1.VolumeResourceRequirements{Requests: size},
		},
	}
	claims := b.kube.CoreV1().PersistentVolumeClaims(metav1.NamespaceDefault)
	created, err := claims.Create(ctx, pvc, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create claim %s: %w", pvc.Name, err)
	}
	created.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, AccessModes: modes, Capacity: size}
	if _, err := claims.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return "", fmt.Errorf("claim %s: status Bound: %w", pvc.Name, err)
	}
	return created.UID, nil
}

// parallel runs fn(0..n-1) on workers goroutines, stopping at the first error.
func parallel(ctx context.Context, workers, n int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
						cancel()
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// sidecarProc is one run of the sidecar binary.
type sidecarProc struct {
	proc    *cluster.Process
	url     string
	started time.Time
}

// startSidecar runs the sidecar in standalone mode (--csi-address= and
// --driver-name: the bench has no CSI driver, see the report), with leader
// election on as deployed, default settings otherwise, plus extra flags.
func (b *bed) startSidecar(ctx context.Context, name string, extra ...string) (*sidecarProc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--csi-address=",
		"--driver-name=" + driverName,
		"--kubeconfig=" + b.cluster.Kubeconfig(),
		"--leader-election-namespace=default",
		"--http-endpoint=" + addr,
		// Every bench PV is brand new: the grace period would leave them alone.
		"--new-pv-grace-period=0",
		"--enable-pprof",
	}
	args = append(args, extra...)
	started := time.Now()
	p, err := b.cluster.StartProcess(ctx, cluster.ProcessSpec{
		Name: name, Path: b.binary, Args: args,
		Env:       []string{"LS_CONTROLLERS=" + b.sim.URL(), "KUBERNETES_SERVICE_HOST="},
		StopGrace: 10 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	s := &sidecarProc{proc: p, url: "http://" + addr, started: started}
	b.sidecar = s
	return s, nil
}

func (b *bed) stopSidecar() error {
	if b.sidecar == nil {
		return nil
	}
	err := b.sidecar.proc.Stop()
	b.sidecar = nil
	return err
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close() //nolint:errcheck // only reserving a port
	return l.Addr().String(), nil
}

// firstReconcile waits for the sidecar's "First reconcile complete" log line
// and returns the time in it.
func (s *sidecarProc) firstReconcile(ctx context.Context) (time.Time, error) {
	for {
		if t, ok := findLogTime(s.proc.LogPath(), "First reconcile complete", s.started); ok {
			return t, nil
		}
		if s.proc.Exited() {
			return time.Time{}, fmt.Errorf("sidecar exited: %v\n%s", s.proc.ExitErr(), s.proc.LogTail(20))
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("no first reconcile: %w\n%s", ctx.Err(), s.proc.LogTail(20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// findLogTime finds the last klog line containing msg, written after since,
// and returns its timestamp (klog: "I1201 07:11:31.331429 ...", local time).
func findLogTime(path, msg string, since time.Time) (time.Time, bool) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, false
	}
	defer f.Close() //nolint:errcheck // read-only
	var found time.Time
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, msg) || len(line) < 21 {
			continue
		}
		t, err := time.ParseInLocation("0102 15:04:05.000000", line[1:21], time.Local)
		if err != nil {
			continue
		}
		t = t.AddDate(since.Year(), 0, 0)
		if !t.Before(since.Add(-time.Second)) {
			found = t
		}
	}
	return found, !found.IsZero()
}

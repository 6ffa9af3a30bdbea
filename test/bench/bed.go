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

	lapi "github.com/LINBIT/golinstor/client"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
// where its diskful replicas are.
type volume struct {
	name   string
	policy policy
	nodes  []string
}

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
// with MutablePVNodeAffinity), the LINSTOR simulator, N static PVs, and the
// sidecar as a separate process in standalone mode.
type bed struct {
	n       int
	cluster *cluster.Cluster
	sim     *linstorsim.Sim
	kube    kubernetes.Interface
	vols    []*volume
	byName  map[string]*volume
	sidecar *sidecarProc
	binary  string
	logf    func(string, ...any)
	rng     *rand.Rand
}

func startBed(ctx context.Context, n int, binary, logDir string, realistic bool, logf func(string, ...any)) (*bed, error) {
	c, err := cluster.Start(ctx, cluster.Options{MutablePVNodeAffinity: true, NoControllerManager: true, NoScheduler: true, LogDir: logDir})
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
	b.sim = linstorsim.New(linstorsim.Options{PropertyNamespace: propNS, Realistic: realistic})
	if err := b.sim.Start(); err != nil {
		_ = c.Stop()
		return nil, err
	}
	if err := b.populate(ctx); err != nil {
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

// populate creates 100 nodes in 5 zones, N volumes with 2 or 3 diskful
// replicas on distinct nodes (policies: half strict, a quarter zone, a
// quarter anywhere), the StorageClasses, and one in-sync static PV per volume.
func (b *bed) populate(ctx context.Context) error {
	start := time.Now()
	for i := 0; i < nodeCount; i++ {
		name := nodeName(i)
		if err := b.sim.AddNode(name, map[string]string{propNS + "/" + zoneKey: zoneOf(name)}, linstorsim.StoragePool{Name: "thin", Provider: lapi.LVM_THIN, TotalKiB: 64 << 30}); err != nil {
			return err
		}
	}
	policies := []policy{strict, strict, zonal, anywhere}
	for i := 0; i < b.n; i++ {
		v := &volume{name: fmt.Sprintf("pvc-%08d", i), policy: policies[i%len(policies)]}
		for _, k := range b.rng.Perm(nodeCount)[:2+i%2] {
			v.nodes = append(v.nodes, nodeName(k))
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
	b.logf("N=%d: %d LINSTOR volumes on %d nodes in %v", b.n, b.n, nodeCount, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if err := parallel(ctx, 16, len(b.vols), func(ctx context.Context, i int) error { return b.createPV(ctx, b.vols[i]) }); err != nil {
		return err
	}
	b.logf("N=%d: %d static PVs created in %v", b.n, b.n, time.Since(start).Round(time.Millisecond))
	return nil
}

// createPV creates a PV as the external-provisioner would have, bound to a
// claim (claimRef; no claim object: no PV binder runs in the bench bed) and
// with the pv-protection finalizer the controller-manager would have added.
func (b *bed) createPV(ctx context.Context, v *volume) error {
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
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: "default", Name: "data-" + v.name},
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

package decide_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// benchCluster builds n volumes on 100 nodes in 5 zones, 2 or 3 diskful
// replicas each, with a mix of strict, zone and anywhere policies, every PV in
// sync (the steady state), plus drifted ones when drift > 0.
func benchCluster(n, drift int) ([]*corev1.PersistentVolume, map[string]*storagev1.StorageClass, *decide.View) {
	view := &decide.View{Nodes: map[string]decide.Segment{}, RDs: make(map[string]*decide.RDView, n)}
	for i := 0; i < 100; i++ {
		name := fmt.Sprintf("node-%03d", i)
		view.Nodes[name] = decide.Segment{decide.HostnameKey: name, "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": fmt.Sprintf("zone-%d", i%5)}
	}
	scs := map[string]*storagev1.StorageClass{
		"strict":   {ObjectMeta: metav1.ObjectMeta{Name: "strict"}, Parameters: map[string]string{"linstor.csi.linbit.com/allowRemoteVolumeAccess": "false"}},
		"zone":     {ObjectMeta: metav1.ObjectMeta{Name: "zone"}, Parameters: map[string]string{"linstor.csi.linbit.com/allowRemoteVolumeAccess": "- fromSame: [topology.kubernetes.io/zone]"}},
		"anywhere": {ObjectMeta: metav1.ObjectMeta{Name: "anywhere"}, Parameters: map[string]string{"allowRemoteVolumeAccess": "true"}},
	}
	classes := []string{"strict", "strict", "zone", "anywhere"}
	pvs := make([]*corev1.PersistentVolume, 0, n)
	old := metav1.NewTime(time.Now().Add(-time.Hour))
	for i := 0; i < n; i++ {
		rd := fmt.Sprintf("pvc-%08d", i)
		replicas := 2 + i%2
		res := make([]decide.Resource, 0, replicas+1)
		for r := 0; r < replicas; r++ {
			res = append(res, decide.Resource{Name: rd, Node: fmt.Sprintf("node-%03d", (i+r*37)%100)})
		}
		res = append(res, decide.Resource{Name: rd, Node: fmt.Sprintf("node-%03d", (i+99)%100), Flags: []string{"DISKLESS", "TIE_BREAKER"}})
		view.RDs[rd] = &decide.RDView{Name: rd, Volumes: map[int]string{0: ""}, Resources: res}
		sc := classes[i%len(classes)]
		policy, _, _ := decide.ResolvePolicy(&corev1.PersistentVolume{Spec: corev1.PersistentVolumeSpec{StorageClassName: sc}}, scs[sc], decide.PolicyAnywhere)
		topo := decide.AccessibleTopology(res, view.Nodes, policy)
		if i < drift {
			topo = decide.Topology{Segments: []decide.Segment{{decide.HostnameKey: "node-gone"}}} // the data moved off that node
		}
		pvs = append(pvs, &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: rd, CreationTimestamp: old},
			Spec: corev1.PersistentVolumeSpec{
				StorageClassName:       sc,
				PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: fixture.Driver, VolumeHandle: rd}},
				NodeAffinity:           decide.AffinityFor(topo),
			},
		})
	}
	return pvs, scs, view
}

func benchmarkDecideAll(b *testing.B, n, drift int) {
	pvs, scs, view := benchCluster(n, drift)
	cfg := decide.Config{DriverName: fixture.Driver, GracePeriod: time.Minute, DefaultPolicy: decide.PolicyAnywhere}
	lookup := func(pv *corev1.PersistentVolume) *storagev1.StorageClass { return scs[pv.Spec.StorageClassName] }
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		decisions, total := decide.DecideAll(pvs, lookup, view, cfg, now)
		if total != n || len(decisions) != n {
			b.Fatalf("decided %d of %d", len(decisions), total)
		}
		changes := 0
		for _, d := range decisions {
			if d.Kind != decide.KindNone {
				changes++
			}
		}
		if changes != drift {
			b.Fatalf("%d changes, want %d", changes, drift)
		}
	}
}

// BenchmarkDecideAll10k is the steady state: 10,000 PVs, all in sync.
func BenchmarkDecideAll10k(b *testing.B) { benchmarkDecideAll(b, 10000, 0) }

// BenchmarkDecideAll10kDrift1k: 1,000 of 10,000 PVs drifted (a node rotation).
func BenchmarkDecideAll10kDrift1k(b *testing.B) { benchmarkDecideAll(b, 10000, 1000) }

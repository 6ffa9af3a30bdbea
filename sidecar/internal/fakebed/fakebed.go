// Package fakebed is the test bed of the sidecar's package tests: a fake
// cluster (client-go's fake clientset) and a fake LINSTOR (golinstor's
// fakelinstor, or the project's simulator) holding PVs whose replicas moved.
// The loop's tests (package controller) and the LINSTOR reader's (package
// linstor) share it; only tests import it.
package fakebed

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	lapi "github.com/LINBIT/golinstor/client"
	"github.com/LINBIT/golinstor/fakelinstor"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/internal/fixture"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/linstor"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// Bed is a fake cluster (client-go fake clientset) and a fake LINSTOR
// (golinstor's fakelinstor, or the simulator: OnSim) holding PVs whose
// replicas moved.
type Bed struct {
	T       *testing.T
	Kube    *fake.Clientset
	fl      *fakelinstor.FakeLinstor
	URL     string // LINSTOR's base URL
	LC      *lapi.Client
	Linstor *linstor.Linstor
	// Deny plays an admission policy for dry runs ("create", "delete").
	Deny    func(verb string, pv *corev1.PersistentVolume) error
	DryRuns []string
}

// New is a Bed on fakelinstor with four nodes, n1 to n4, each in its own
// zone.
func New(t *testing.T) *Bed {
	t.Helper()
	fl := fakelinstor.New()
	t.Cleanup(fl.Server.Close)
	u, err := url.Parse(fl.Server.URL)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := lapi.NewClient(lapi.BaseURL(u), lapi.Log(fixture.QuietLog{}))
	if err != nil {
		t.Fatal(err)
	}
	b := On(t, fl.Server.URL, lc)
	b.fl = fl
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		b.Must(lc.Nodes.Create(context.Background(), lapi.Node{Name: n, Type: "SATELLITE", Props: map[string]string{
			linstor.NamespaceTopology + "/" + decide.HostnameKey:       n,
			linstor.NamespaceTopology + "/topology.kubernetes.io/zone": "z-" + n,
		}}))
	}
	return b
}

// On is a Bed on the LINSTOR at url that lc speaks to.
func On(t *testing.T, url string, lc *lapi.Client) *Bed {
	b := &Bed{T: t, Kube: fake.NewClientset(), URL: url, LC: lc, Linstor: linstor.NewLinstor(lc, linstor.NamespaceTopology)}
	b.Kube.PrependReactor("*", "persistentvolumes", b.dryRun)
	return b
}

// OnSim is New on the LINSTOR simulator (opts say whether in
// realistic mode) instead of fakelinstor, with the same nodes.
func OnSim(t *testing.T, opts linstorsim.Options) (*Bed, *linstorsim.Sim) {
	t.Helper()
	sim := linstorsim.New(opts)
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	lc, err := sim.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	b := On(t, sim.URL(), lc)
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		b.Must(sim.AddNode(n, map[string]string{linstor.NamespaceTopology + "/topology.kubernetes.io/zone": "z-" + n},
			linstorsim.StoragePool{Name: "thin", Provider: lapi.LVM_THIN, TotalKiB: 1 << 30}))
	}
	return b, sim
}

// Must fails the test on err.
func (b *Bed) Must(err error) {
	b.T.Helper()
	if err != nil {
		b.T.Fatal(err)
	}
}

// dryRun answers server-side dry runs of PV creates and deletes as the API
// server does (validate, apply nothing), which the fake clientset's tracker
// would otherwise carry out. deny, when set, plays an admission policy.
func (b *Bed) dryRun(a k8stesting.Action) (bool, runtime.Object, error) {
	switch act := a.(type) {
	case k8stesting.CreateActionImpl:
		if len(act.CreateOptions.DryRun) == 0 {
			return false, nil, nil
		}
		b.DryRuns = append(b.DryRuns, "create")
		pv := act.GetObject().(*corev1.PersistentVolume)
		if pv.Name == "" && pv.GenerateName == "" {
			return true, nil, apierrors.NewInvalid(schema.GroupKind{Kind: "PersistentVolume"}, "", nil)
		}
		if b.Deny != nil {
			if err := b.Deny("create", pv); err != nil {
				return true, nil, err
			}
		}
		return true, pv, nil
	case k8stesting.DeleteActionImpl:
		if len(act.DeleteOptions.DryRun) == 0 {
			return false, nil, nil
		}
		b.DryRuns = append(b.DryRuns, "delete")
		obj, err := b.Kube.Tracker().Get(act.GetResource(), "", act.GetName())
		if err != nil {
			return true, nil, err
		}
		if b.Deny != nil {
			if err := b.Deny("delete", obj.(*corev1.PersistentVolume)); err != nil {
				return true, nil, err
			}
		}
		return true, nil, nil
	}
	return false, nil, nil
}

// IsDryRun reports whether a is a server-side dry run (see Bed.dryRun).
func IsDryRun(a k8stesting.Action) bool {
	switch act := a.(type) {
	case k8stesting.CreateActionImpl:
		return len(act.CreateOptions.DryRun) > 0
	case k8stesting.DeleteActionImpl:
		return len(act.DeleteOptions.DryRun) > 0
	}
	return false
}

// AddVolume creates an RD with nVols volume definitions, diskful on nodes, and
// one PV per volume with strict affinity to oldNodes and a bound claim.
func (b *Bed) AddVolume(rd string, nVols int, nodes, oldNodes []string) []*corev1.PersistentVolume {
	ctx := context.Background()
	b.Must(b.LC.ResourceDefinitions.Create(ctx, lapi.ResourceDefinitionCreate{ResourceDefinition: lapi.ResourceDefinition{Name: rd}}))
	for v := 0; v < nVols; v++ {
		nr := int32(v)
		b.Must(b.LC.ResourceDefinitions.CreateVolumeDefinition(ctx, rd, lapi.VolumeDefinitionCreate{
			VolumeDefinition: lapi.VolumeDefinition{VolumeNumber: &nr, SizeKib: 1024},
		}))
	}
	for _, n := range nodes {
		b.Must(b.LC.Resources.Create(ctx, lapi.ResourceCreate{Resource: lapi.Resource{Name: rd, NodeName: n}}))
	}
	var pvs []*corev1.PersistentVolume
	for v := 0; v < nVols; v++ {
		handle := rd
		if v > 0 {
			handle = fmt.Sprintf("%s/%d", rd, v)
		}
		name := fmt.Sprintf("pv-%s-%d", rd, v)
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{
				Name: name, UID: types.UID("old-" + name), ResourceVersion: "7",
				CreationTimestamp: metav1.NewTime(time.Now().Add(-time.Hour)),
				Labels:            map[string]string{"app": "db"},
				Annotations:       map[string]string{"pv.kubernetes.io/provisioned-by": fixture.Driver},
				Finalizers:        []string{"kubernetes.io/pv-protection", "external-provisioner.volume.kubernetes.io/finalizer"},
			},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
				StorageClassName:              "strict",
				MountOptions:                  []string{"noatime"},
				ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: "ns", Name: "claim-" + name, UID: types.UID("claim-" + name), ResourceVersion: "3"},
				PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
					Driver: fixture.Driver, VolumeHandle: handle, FSType: "ext4",
					VolumeAttributes: map[string]string{
						decide.VolumeContextMarker:    "true",
						decide.VolumeContextPolicyKey: "false",
					},
				}},
				NodeAffinity: decide.AffinityFor(decide.Topology{Segments: HostSegments(oldNodes)}),
			},
			Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeBound},
		}
		created, err := b.Kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
		b.Must(err)
		pvs = append(pvs, created)
	}
	return pvs
}

// HostSegments is one hostname segment per node.
func HostSegments(nodes []string) []decide.Segment {
	out := make([]decide.Segment, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, decide.Segment{decide.HostnameKey: n})
	}
	return out
}

// SetVDProp sets a property on volume definition vol of rd.
func (b *Bed) SetVDProp(rd string, vol int, key, value string) {
	b.T.Helper()
	b.Must(b.LC.ResourceDefinitions.ModifyVolumeDefinition(context.Background(), rd, vol, lapi.VolumeDefinitionModify{
		GenericPropsModify: lapi.GenericPropsModify{OverrideProps: lapi.OverrideProps{key: value}},
	}))
}

// AffinityOf describes the node affinity PV name has now.
func (b *Bed) AffinityOf(name string) string {
	b.T.Helper()
	pv, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), name, metav1.GetOptions{})
	b.Must(err)
	return decide.DescribeAffinity(pv.Spec.NodeAffinity)
}

// SavedStates returns every saved-state property left in LINSTOR.
func (b *Bed) SavedStates() map[string]*decide.SavedState {
	v, err := b.Linstor.Fetch(context.Background())
	b.Must(err)
	byPV, bad := v.SavedStates()
	if len(bad) > 0 {
		b.T.Fatalf("undecodable saved state left: %v", bad[0].Err)
	}
	return byPV
}

// AssertHealed checks the invariants of a finished repair: the PV exists with
// the affinity of its replicas, the same claimRef and reclaim policy as before,
// no skip-reclaim annotation, no saved state, and LINSTOR still has the volume.
func (b *Bed) AssertHealed(before *corev1.PersistentVolume, nodes []string) {
	b.T.Helper()
	pv, err := b.Kube.CoreV1().PersistentVolumes().Get(context.Background(), before.Name, metav1.GetOptions{})
	if err != nil {
		b.T.Fatalf("pv %s lost: %v", before.Name, err)
	}
	if !decide.AffinityMatches(pv.Spec.NodeAffinity, decide.Topology{Segments: HostSegments(nodes)}) {
		b.T.Errorf("pv %s affinity %s, want hosts %v", pv.Name, decide.DescribeAffinity(pv.Spec.NodeAffinity), nodes)
	}
	if pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != before.Spec.ClaimRef.UID || pv.Spec.ClaimRef.Name != before.Spec.ClaimRef.Name {
		b.T.Errorf("pv %s claimRef changed: %+v", pv.Name, pv.Spec.ClaimRef)
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != before.Spec.PersistentVolumeReclaimPolicy {
		b.T.Errorf("pv %s reclaim policy %s, want %s", pv.Name, pv.Spec.PersistentVolumeReclaimPolicy, before.Spec.PersistentVolumeReclaimPolicy)
	}
	if _, ok := pv.Annotations[fixture.Driver+"/skip-reclaim"]; ok {
		b.T.Errorf("pv %s still has the skip-reclaim annotation", pv.Name)
	}
	if pv.Spec.CSI.VolumeHandle != before.Spec.CSI.VolumeHandle || len(pv.Spec.MountOptions) != 1 || pv.Labels["app"] != "db" {
		b.T.Errorf("pv %s lost fields in the replace: %+v", pv.Name, pv.Spec)
	}
	if s := b.SavedStates()[pv.Name]; s != nil {
		b.T.Errorf("pv %s saved state left on %s", pv.Name, s.Location())
	}
	ref, _ := decide.ParseVolumeHandle(before.Spec.CSI.VolumeHandle)
	v, err := b.Linstor.Fetch(context.Background())
	b.Must(err)
	if rd := v.RDs[ref.RD]; rd == nil || len(rd.Resources) == 0 {
		b.T.Errorf("volume %s gone from LINSTOR", ref)
	} else if _, ok := rd.Volumes[ref.Volume]; !ok {
		b.T.Errorf("volume definition %s gone from LINSTOR", ref)
	}
}

// CountingTransport counts the requests that reach LINSTOR.
type CountingTransport struct {
	base http.RoundTripper
	N    atomic.Int64
}

func (c *CountingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.N.Add(1)
	return c.base.RoundTrip(req)
}

// BulkLinstor is a Linstor on a BulkTransport against the bed's LINSTOR,
// with the requests it sends counted.
func (b *Bed) BulkLinstor(maxReuse time.Duration) (*linstor.Linstor, *CountingTransport) {
	b.T.Helper()
	u, err := url.Parse(b.URL)
	b.Must(err)
	ct := &CountingTransport{base: http.DefaultTransport.(*http.Transport).Clone()}
	bt := linstor.NewBulkTransport(ct)
	lc, err := lapi.NewClient(lapi.BaseURL(u), lapi.Log(fixture.QuietLog{}), lapi.HTTPClient(&http.Client{Transport: bt}))
	b.Must(err)
	return linstor.NewBulkLinstor(lc, bt, linstor.NamespaceTopology, maxReuse), ct
}

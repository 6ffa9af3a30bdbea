package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// The upstream affinity controller's compatibility keys (DOMAIN.md section
// 3), written out here rather than taken from the sidecar's packages, so a wrong
// constant there fails these tests.
const (
	skipAnnotation = "piraeus.io/skip-affinity-controller"
	skipRDProperty = "Aux/affinity-updater-skip"
	savedPVKey     = "Aux/affinity-updater-saved-pv"
	eventUpdated   = "VolumeAffinityUpdated"
)

// Storage classes every test bed of this package gets.
var storageClasses = []testbed.StorageClass{
	{Name: "strict", Policy: testbed.PolicyStrict},
	{Name: "strict-2", Policy: testbed.PolicyStrict, Replicas: 2},
	{Name: "zone", Policy: testbed.PolicyZone},
	{Name: "anywhere", Policy: testbed.PolicyAnywhere},
	{Name: "host-in-zone", Policy: testbed.PolicyHostInZone, Replicas: 2},
}

func createStorageClasses(ctx context.Context, t *testing.T, b *testbed.Bed) {
	t.Helper()
	for _, sc := range storageClasses {
		must(t, b.CreateStorageClass(ctx, sc))
	}
}

// zoneOf is the zone of a default node.
func zoneOf(node string) string {
	for _, n := range testbed.DefaultNodes() {
		if n.Name == node {
			return n.Zone
		}
	}
	return ""
}

// expected is the accessible topology of rd under a storage class's
// policy, worked out independently of the sidecar from where the
// simulator says the diskful replicas are.
func expected(t *testing.T, b *testbed.Bed, rd, class string) []testbed.Segment {
	t.Helper()
	nodes, err := b.Sim.DiskfulNodes(rd)
	must(t, err)
	if len(nodes) == 0 {
		t.Fatalf("volume %s has no diskful replica", rd)
	}
	var segs []testbed.Segment
	switch class {
	case "strict", "strict-2":
		segs = testbed.Hosts(nodes...)
	case "zone":
		var zones []string
		for _, n := range nodes {
			if z := zoneOf(n); !slices.Contains(zones, z) {
				zones = append(zones, z)
			}
		}
		segs = testbed.Zones(zones...)
	case "anywhere":
		return nil
	case "host-in-zone":
		for _, n := range nodes {
			segs = append(segs, testbed.Segment{testbed.HostnameKey: n, testbed.ZoneKey: zoneOf(n)})
		}
	default:
		t.Fatalf("no expectation for class %s", class)
	}
	return segs
}

// pvSnapshot is what "untouched" compares.
type pvSnapshot struct {
	uid             types.UID
	resourceVersion string
	affinity        string
}

func snapshotPVs(ctx context.Context, t *testing.T, b *testbed.Bed, names ...string) map[string]pvSnapshot {
	t.Helper()
	out := map[string]pvSnapshot{}
	for _, n := range names {
		pv, err := b.Kube.CoreV1().PersistentVolumes().Get(ctx, n, metav1.GetOptions{})
		must(t, err)
		out[n] = pvSnapshot{uid: pv.UID, resourceVersion: pv.ResourceVersion, affinity: testbed.DescribeAffinity(pv.Spec.NodeAffinity)}
	}
	return out
}

// assertUntouched fails for every PV that is not exactly as snapshotted.
func assertUntouched(ctx context.Context, t *testing.T, b *testbed.Bed, before map[string]pvSnapshot) {
	t.Helper()
	for name, was := range before {
		pv, err := b.Kube.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("PV %s: %v", name, err)
			continue
		}
		now := pvSnapshot{uid: pv.UID, resourceVersion: pv.ResourceVersion, affinity: testbed.DescribeAffinity(pv.Spec.NodeAffinity)}
		if now != was {
			t.Errorf("PV %s was touched: before %+v, now %+v", name, was, now)
		}
	}
}

// repairs is the sidecar's count of writes to PVs and saved state.
func repairs(ctx context.Context, t *testing.T, b *testbed.Bed, match map[string]string) float64 {
	t.Helper()
	m, err := b.Metrics(ctx)
	must(t, err)
	return m.Sum("linstor_affinity_sidecar_repairs_total", match)
}

// actedOn lists the PVs the sidecar logged "Acting on PV" for.
func actedOn(t *testing.T, b *testbed.Bed) []string {
	t.Helper()
	lines, err := b.SidecarLog("Acting on PV")
	must(t, err)
	var out []string
	for _, l := range lines {
		out = append(out, l.Fields["pv"])
	}
	return out
}

// events returns the reasons and messages of Events about an object.
func events(ctx context.Context, t *testing.T, b *testbed.Bed, namespace, kind, name string) []string {
	t.Helper()
	sel := fields.Set{"involvedObject.kind": kind, "involvedObject.name": name}.AsSelector().String()
	list, err := b.Kube.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: sel})
	must(t, err)
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Reason+": "+e.Message)
	}
	return out
}

// waitEvent waits until an Event with reason exists about the object.
func waitEvent(ctx context.Context, t *testing.T, b *testbed.Bed, namespace, kind, name, reason string) string {
	t.Helper()
	ctx, cancel := within(ctx)
	defer cancel()
	var found string
	err := testbed.Poll(ctx, fmt.Sprintf("event %s on %s %s", reason, kind, name), func(ctx context.Context) (bool, string) {
		evs := events(ctx, t, b, namespace, kind, name)
		for _, e := range evs {
			if strings.HasPrefix(e, reason+":") {
				found = e
				return true, ""
			}
		}
		return false, fmt.Sprintf("events %q", evs)
	})
	must(t, err)
	return found
}

// assertNoVolumeDeleted fails when anything deleted a resource or volume
// definition in LINSTOR: data must never be lost.
func assertNoVolumeDeleted(t *testing.T, b *testbed.Bed) {
	t.Helper()
	if d := b.Sim.VolumeDeletions(); len(d) > 0 {
		t.Errorf("volumes deleted in LINSTOR: %+v", d)
	}
}

// assertNoSavedState fails when a replace left saved state on a volume or
// resource definition.
func assertNoSavedState(t *testing.T, b *testbed.Bed, rd string, volumes int32) {
	t.Helper()
	props, err := b.Sim.RDProps(rd)
	must(t, err)
	if v, ok := props[savedPVKey]; ok {
		t.Errorf("resource definition %s keeps saved state %.80s", rd, v)
	}
	for vnr := range volumes {
		props, err := b.Sim.VDProps(rd, vnr)
		must(t, err)
		if v, ok := props[savedPVKey]; ok {
			t.Errorf("volume definition %s/%d keeps saved state %.80s", rd, vnr, v)
		}
	}
}

// getPV reads a PV or fails.
func getPV(ctx context.Context, t *testing.T, b *testbed.Bed, name string) *corev1.PersistentVolume {
	t.Helper()
	pv, err := b.Kube.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
	must(t, err)
	return pv
}

// provisionOne provisions one claim through LINSTOR CSI and the
// external-provisioner and returns its PV.
func provisionOne(ctx context.Context, t *testing.T, b *testbed.Bed, c testbed.Claim) *corev1.PersistentVolume {
	t.Helper()
	wctx, cancel := within(ctx)
	defer cancel()
	pvs, err := b.ProvisionVolumes(wctx, c)
	must(t, err)
	return pvs[c.Name]
}

// rotateOut takes node from out of the cluster as a node rotation does: the
// volume rd's replica moves to node to, from leaves LINSTOR and Kubernetes,
// and pod (using claim) is deleted and created again, as its StatefulSet
// would, so the scheduler must place it anew.
func rotateOut(ctx context.Context, t *testing.T, b *testbed.Bed, rd, from, to, pod, claim string) {
	t.Helper()
	must(t, b.Sim.MoveReplica(rd, from, to))
	must(t, b.Sim.RemoveNode(from))
	must(t, b.DeleteKubeNode(ctx, from))
	wctx, cancel := within(ctx)
	must(t, b.DeletePod(wctx, pod))
	cancel()
	if _, err := b.CreatePod(ctx, pod, claim, nil); err != nil {
		t.Fatal(err)
	}
}

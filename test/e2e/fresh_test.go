package e2e

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// Volumes the real external-provisioner just made from LINSTOR CSI's own
// CreateVolume answer are in sync by definition: over several cycles the
// sidecar must not touch a single one (no repair, same UID, same
// resourceVersion), whatever the policy, replica count or the order in
// which the provisioner wrote the keys of a multi-key term.
func TestFreshlyProvisionedVolumesAreLeftAlone(t *testing.T) {
	b := startBed(t, testbed.Options{})
	ctx := testContext(t, 5*time.Minute)
	createStorageClasses(ctx, t, b)

	claims := []testbed.Claim{
		{Name: "strict-n1", StorageClass: "strict", Node: "n1"},
		{Name: "strict-n3", StorageClass: "strict", Node: "n3"},
		{Name: "strict2-n2", StorageClass: "strict-2", Node: "n2"},
		{Name: "strict2-n4", StorageClass: "strict-2", Node: "n4"},
		{Name: "zone-n1", StorageClass: "zone", Node: "n1"},
		{Name: "zone-n4", StorageClass: "zone", Node: "n4"},
		{Name: "anywhere-n2", StorageClass: "anywhere", Node: "n2"},
		{Name: "hostzone-n3", StorageClass: "host-in-zone", Node: "n3"},
		{Name: "hostzone-n1", StorageClass: "host-in-zone", Node: "n1"},
	}
	// One at a time: LINSTOR CSI v1.6.4 can answer concurrent CreateVolume
	// calls with a topology from a stale resource cache (golinstor's cache
	// is invalidated before, not after, a placement), and the sidecar then
	// rightly repairs that PV. Here only the sidecar is under test.
	pvs := map[string]*corev1.PersistentVolume{}
	for _, c := range claims {
		wctx, cancel := within(ctx)
		got, err := b.ProvisionVolumes(wctx, c)
		cancel()
		must(t, err)
		pvs[c.Name] = got[c.Name]
	}

	var names []string
	for _, c := range claims {
		pv := pvs[c.Name]
		names = append(names, pv.Name)
		// The bed makes PVs as production does: provisioned by the driver,
		// with the topology LINSTOR CSI computed.
		if got := pv.Annotations[testbed.ProvisionedByAnnotation]; got != testbed.DriverName {
			t.Errorf("PV %s of %s: provisioned-by %q", pv.Name, c.Name, got)
		}
		want := expected(t, b, pv.Spec.CSI.VolumeHandle, c.StorageClass)
		if !testbed.AffinityEquals(pv.Spec.NodeAffinity, want) {
			t.Fatalf("PV %s of %s: provisioner wrote affinity %s, LINSTOR says %s", pv.Name, c.Name,
				testbed.DescribeAffinity(pv.Spec.NodeAffinity), testbed.DescribeSegments(want))
		}
		if nodes, _ := b.Sim.DiskfulNodes(pv.Spec.CSI.VolumeHandle); !slices.Contains(nodes, c.Node) {
			t.Errorf("volume of %s is on %v, not on its selected node %s", c.Name, nodes, c.Node)
		}
	}
	before := snapshotPVs(ctx, t, b, names...)

	// Every PV exists before these cycles start, so each cycle decided
	// about all of them.
	wctx, cancel := within(ctx)
	must(t, b.WaitCycles(wctx, 4))
	cancel()

	assertUntouched(ctx, t, b, before)
	if n := repairs(ctx, t, b, nil); n != 0 {
		t.Errorf("sidecar counted %v repairs of fresh volumes", n)
	}
	if acted := actedOn(t, b); len(acted) > 0 {
		t.Errorf("sidecar acted on fresh PVs %v", acted)
	}
	m, err := b.Metrics(ctx)
	must(t, err)
	if inSync := m.Sum("linstor_affinity_sidecar_pvs", map[string]string{"status": "in-sync"}); inSync != float64(len(claims)) {
		t.Errorf("pvs{status=in-sync} = %v, want %d; all series: %+v", inSync, len(claims), m.Series("linstor_affinity_sidecar_pvs"))
	}
	for _, name := range names {
		for _, e := range events(ctx, t, b, "", "PersistentVolume", name) {
			t.Errorf("event on fresh PV %s: %s", name, e)
		}
	}
	assertNoVolumeDeleted(t, b)
}

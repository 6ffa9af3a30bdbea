package faults

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// The upstream controller's compatibility keys (DOMAIN.md section 3),
// written out here so a wrong constant in the sidecar's packages fails the suite.
const (
	savedPVKey   = "Aux/affinity-updater-saved-pv"
	skipReclaim  = testbed.DriverName + "/skip-reclaim"
	classStrict  = "strict"
	classStrict2 = "strict-2"
	nodeCount    = 4
)

// vol is one provisioned volume the suite keeps track of.
type vol struct {
	claim    string
	pv       string
	class    string
	claimUID types.UID
	// reclaim is the policy the PV must have; Delete as provisioned unless a
	// case changed it on purpose.
	reclaim corev1.PersistentVolumeReclaimPolicy
	// released marks a volume whose claim a case deleted: its PV is
	// Released, which the sidecar leaves alone by design, so only "exists,
	// volume kept, no saved state" is asserted for it.
	released bool
}

// world is a bed with the volumes on it.
type world struct {
	b    *testbed.Bed
	vols []*vol
	// acting is the sidecar expected to lead and act; nil means b.Sidecar.
	acting *instance
	// period is the sidecar's --reconcile-rate when a case sets one (zero:
	// the bed's, seconds): two more complete cycles take up to twice that.
	period time.Duration
}

// instance is one sidecar process and its HTTP endpoint.
type instance struct {
	pod  string
	proc *cluster.Process
	url  string
}

func (w *world) actor() *instance {
	if w.acting != nil {
		return w.acting
	}
	return &instance{pod: testbed.ControllerPodName, proc: w.b.Sidecar, url: w.b.SidecarURL()}
}

// provision creates strict and strict-2 storage classes and n volumes of
// class on node, and waits until they are Bound.
func provision(ctx context.Context, t *testing.T, w *world, prefix, class, node string, n int) []*vol {
	t.Helper()
	var claims []testbed.Claim
	for i := range n {
		claims = append(claims, testbed.Claim{Name: fmt.Sprintf("%s-%02d", prefix, i), StorageClass: class, Node: node})
	}
	wctx, cancel := within(ctx)
	defer cancel()
	pvs, err := w.b.ProvisionVolumes(wctx, claims...)
	must(t, err)
	var out []*vol
	for _, c := range claims {
		pv := pvs[c.Name]
		v := &vol{claim: c.Name, pv: pv.Name, class: class, claimUID: pv.Spec.ClaimRef.UID, reclaim: pv.Spec.PersistentVolumeReclaimPolicy}
		out = append(out, v)
		w.vols = append(w.vols, v)
	}
	return out
}

func createClasses(ctx context.Context, t *testing.T, b *testbed.Bed) {
	t.Helper()
	must(t, b.CreateStorageClass(ctx, testbed.StorageClass{Name: classStrict, Policy: testbed.PolicyStrict}))
	must(t, b.CreateStorageClass(ctx, testbed.StorageClass{Name: classStrict2, Policy: testbed.PolicyStrict, Replicas: 2}))
}

// move moves one diskful replica of each volume to a node that holds none of
// its replicas (the next one by name, round robin), as LINSTOR does when it
// evacuates or rebalances, so every PV needs a repair. It returns how many
// PVs now need one.
func (w *world) move(t *testing.T, vols []*vol) int {
	t.Helper()
	moved := 0
	for _, v := range vols {
		nodes, err := w.b.Sim.DiskfulNodes(v.pv)
		must(t, err)
		if len(nodes) == 0 {
			t.Fatalf("volume %s has no diskful replica", v.pv)
		}
		from := nodes[0]
		to := ""
		for i := 1; i <= nodeCount; i++ {
			cand := fmt.Sprintf("n%d", (nodeIndex(from)+i-1)%nodeCount+1)
			if !slices.Contains(nodes, cand) {
				to = cand
				break
			}
		}
		if to == "" {
			t.Fatalf("volume %s: no free node to move to from %v", v.pv, nodes)
		}
		must(t, w.b.Sim.MoveReplica(v.pv, from, to))
		moved++
	}
	return moved
}

func nodeIndex(name string) int {
	var i int
	_, _ = fmt.Sscanf(name, "n%d", &i)
	return i
}

// want is the affinity a volume's PV must have, worked out independently of
// the sidecar from where the simulator keeps its diskful replicas.
func (w *world) want(t *testing.T, v *vol) []testbed.Segment {
	t.Helper()
	nodes, err := w.b.Sim.DiskfulNodes(v.pv)
	must(t, err)
	if len(nodes) == 0 {
		t.Fatalf("volume %s has no diskful replica", v.pv)
	}
	return testbed.Hosts(nodes...)
}

// pvState is what "untouched" compares: everything a write of the sidecar
// changes (a recreate changes the UID, an in-place repair the affinity, the
// retain step the reclaim policy and the skip-reclaim mark). The
// resourceVersion is not compared: right after provisioning, the
// controllers of the bed still write status and finalizers.
type pvState struct {
	uid      types.UID
	affinity string
	reclaim  corev1.PersistentVolumeReclaimPolicy
	mark     string
}

func stateOf(pv *corev1.PersistentVolume) pvState {
	return pvState{pv.UID, testbed.DescribeAffinity(pv.Spec.NodeAffinity), pv.Spec.PersistentVolumeReclaimPolicy, pv.Annotations[skipReclaim]}
}

// untouched is a snapshot of the PVs and of the sidecar's count of writes.
type untouched struct {
	pvs    map[string]pvState
	writes float64
}

func (w *world) snapshot(ctx context.Context, t *testing.T) untouched {
	t.Helper()
	out := untouched{pvs: map[string]pvState{}, writes: w.writes(ctx, t)}
	for _, v := range w.vols {
		pv, err := w.b.Kube.CoreV1().PersistentVolumes().Get(ctx, v.pv, metav1.GetOptions{})
		must(t, err)
		out.pvs[v.pv] = stateOf(pv)
	}
	return out
}

// writes is the acting sidecar's count of successful writes (repairs and
// saved-state clean-ups).
func (w *world) writes(ctx context.Context, t *testing.T) float64 {
	t.Helper()
	m, err := testbed.ScrapeMetrics(ctx, w.actor().url+"/metrics")
	must(t, err)
	return m.Sum("linstor_affinity_sidecar_repairs_total", map[string]string{"result": "success"})
}

// assertUntouched fails for every PV the sidecar wrote since the snapshot,
// when the sidecar counted any successful write, and when saved state
// (the first write of a replace) appeared.
func (w *world) assertUntouched(ctx context.Context, t *testing.T, before untouched) {
	t.Helper()
	for name, was := range before.pvs {
		pv, err := w.b.Kube.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("PV %s: %v", name, err)
			continue
		}
		if now := stateOf(pv); now != was {
			t.Errorf("PV %s was rewritten during the fault: before %+v, now %+v", name, was, now)
		}
		w.assertNoSavedState(t, name)
	}
	if n := w.writes(ctx, t); n != before.writes {
		t.Errorf("the sidecar counted %v successful writes during the fault", n-before.writes)
	}
}

// assertSettled waits until every PV has its wanted affinity, then asserts
// the invariants of the suite: each PV exists with that affinity, the
// reclaim policy it must have and no skip-reclaim mark; each claim is Bound
// to the same PV name and is the same claim (UID); no other PV exists; after
// two more complete cycles no saved state is left on any volume; LINSTOR
// deleted no volume; the sidecar runs and answers /healthz and /readyz. It
// returns the number of PVs lost (missing at the end), which must be zero.
func (w *world) assertSettled(ctx context.Context, t *testing.T) int {
	t.Helper()
	wctx, cancel := within(ctx)
	defer cancel()
	lost := 0
	for _, v := range w.vols {
		if v.released {
			pv, err := w.b.Kube.CoreV1().PersistentVolumes().Get(wctx, v.pv, metav1.GetOptions{})
			if err != nil {
				t.Errorf("PV %s (claim deleted) lost: %v", v.pv, err)
				lost++
				continue
			}
			w.assertPVFields(t, v, pv)
			continue
		}
		pv, err := w.b.WaitPVAffinity(wctx, v.pv, w.want(t, v)...)
		if err != nil {
			if _, gerr := w.b.Kube.CoreV1().PersistentVolumes().Get(ctx, v.pv, metav1.GetOptions{}); gerr != nil {
				lost++
			}
			t.Errorf("volume %s: %v", v.claim, err)
			continue
		}
		w.assertPVFields(t, v, pv)
		pvc, err := w.b.WaitClaimBound(wctx, v.claim, v.pv)
		if err != nil {
			t.Errorf("volume %s: %v", v.claim, err)
			continue
		}
		if pvc.UID != v.claimUID {
			t.Errorf("claim %s was recreated (UID %s, was %s)", v.claim, pvc.UID, v.claimUID)
		}
		if ref := pv.Spec.ClaimRef; ref == nil || ref.UID != pvc.UID {
			t.Errorf("PV %s claimRef %+v, want claim %s (%s)", v.pv, ref, v.claim, pvc.UID)
		}
	}
	if t.Failed() {
		return lost
	}
	// Whatever the sidecar still had to finish (clearing saved state after
	// a crash between create and clear-state), two complete cycles did it.
	act := w.actor()
	cctx, ccancel := context.WithTimeout(ctx, waitTimeout+2*w.period)
	defer ccancel()
	must(t, waitSuccessCycles(cctx, act.url, 2))
	list, err := w.b.Kube.CoreV1().PersistentVolumes().List(wctx, metav1.ListOptions{})
	must(t, err)
	if len(list.Items) != len(w.vols) {
		var names []string
		for _, pv := range list.Items {
			names = append(names, pv.Name)
		}
		t.Errorf("%d PVs exist (%v), want %d", len(list.Items), names, len(w.vols))
	}
	for _, v := range w.vols {
		w.assertNoSavedState(t, v.pv)
	}
	if d := w.b.Sim.VolumeDeletions(); len(d) > 0 {
		t.Errorf("volumes deleted in LINSTOR: %+v", d)
	}
	assertHealthy(wctx, t, act.url, act.proc.Exited())
	assertNoDataRace(t, act.proc.LogPath())
	return lost
}

// assertNoDataRace fails when a sidecar built with -race (FAULTS_RACE=1)
// reported a data race in its log. A race-built process keeps running after
// a report, so the log is the only place to find it.
func assertNoDataRace(t *testing.T, logPath string) {
	t.Helper()
	b, err := os.ReadFile(logPath)
	must(t, err)
	if i := bytes.Index(b, []byte("WARNING: DATA RACE")); i >= 0 {
		end := min(len(b), i+3000)
		t.Errorf("data race reported in %s:\n%s", logPath, b[i:end])
	}
}

func (w *world) assertPVFields(t *testing.T, v *vol, pv *corev1.PersistentVolume) {
	t.Helper()
	if pv.Spec.PersistentVolumeReclaimPolicy != v.reclaim {
		t.Errorf("PV %s reclaim policy %s, want %s", v.pv, pv.Spec.PersistentVolumeReclaimPolicy, v.reclaim)
	}
	if val, ok := pv.Annotations[skipReclaim]; ok {
		t.Errorf("PV %s keeps the replace's %s=%q", v.pv, skipReclaim, val)
	}
	if pv.DeletionTimestamp != nil {
		t.Errorf("PV %s is being deleted", v.pv)
	}
	if !w.b.Sim.VolumeExists(v.pv) {
		t.Errorf("volume %s gone from LINSTOR", v.pv)
	}
}

// assertNoSavedState fails when a replace left saved state on the resource
// definition or volume definition 0 of rd.
func (w *world) assertNoSavedState(t *testing.T, rd string) {
	t.Helper()
	props, err := w.b.Sim.RDProps(rd)
	must(t, err)
	if s, ok := props[savedPVKey]; ok {
		t.Errorf("resource definition %s keeps saved state %.80s", rd, s)
	}
	props, err = w.b.Sim.VDProps(rd, 0)
	must(t, err)
	if s, ok := props[savedPVKey]; ok {
		t.Errorf("volume definition %s/0 keeps saved state %.80s", rd, s)
	}
}

// assertHealthy fails unless the sidecar at base runs and answers /healthz
// and /readyz with 200.
func assertHealthy(ctx context.Context, t *testing.T, base string, exited bool) {
	t.Helper()
	if exited {
		t.Errorf("sidecar at %s exited", base)
		return
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, path := range []string{"/healthz", "/readyz"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		must(t, err)
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("sidecar %s: %v", path, err)
			continue
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("sidecar %s: %s", path, resp.Status)
		}
	}
}

// readyz is nil when the sidecar at base answers /readyz with 200.
func readyz(ctx context.Context, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

// waitSuccessCycles waits until the sidecar at base completed n more
// successful cycles than when called.
func waitSuccessCycles(ctx context.Context, base string, n int) error {
	count := func(ctx context.Context) (float64, error) {
		m, err := testbed.ScrapeMetrics(ctx, base+"/metrics")
		if err != nil {
			return 0, err
		}
		return m.Sum("linstor_affinity_sidecar_reconciles_total", map[string]string{"result": "success"}), nil
	}
	start, err := count(ctx)
	if err != nil {
		return err
	}
	return testbed.Poll(ctx, fmt.Sprintf("%d more successful cycles of %s", n, base), func(ctx context.Context) (bool, string) {
		now, err := count(ctx)
		if err != nil {
			return false, err.Error()
		}
		return now >= start+float64(n), fmt.Sprintf("%v since", now-start)
	})
}

package faults

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

const (
	// slowLatency is how late the simulator answers every request of every
	// client (the sidecar and LINSTOR CSI) in the slow-LINSTOR case.
	slowLatency = 5 * time.Second
	// defaultReconcileRate is the sidecar's --reconcile-rate default: with
	// it, a full read comes only every 2 minutes, so the blocked-pod path
	// must do the work.
	defaultReconcileRate = 2 * time.Minute
	// defaultWorkers is the sidecar's --workers default.
	defaultWorkers = 10

	// LINSTOR requests the sidecar's work waits for, one after the other:
	//   - per read for blocked pods (Linstor.FetchVolumes, up to 50 volumes):
	//     the filtered resource definition list and the filtered resource
	//     view, plus the node list when the last full read is older than the
	//     period: at most 3;
	//   - per repair (a recreate: the bed's API server cannot change a PV's
	//     affinity in place): ControllerGetVolume, which LINSTOR CSI v1.6.4
	//     answers with the resource definition, its volume definitions and
	//     the resources (from its 30 s cache of the resource view, so not
	//     always a request); then the sidecar's replica confirmation, the
	//     read of the saved-state slot, the save, its read-back, the
	//     read-back before the delete, and after the create the read-back
	//     and the clear: at most 10, of which 8 come before the create that
	//     lets the pod be placed.
	requestsPerRead       = 3
	requestsPerRepair     = 10
	requestsBeforePlacing = 8
)

// slowLinstorBound is how long the case allows from the pods' recreation to
// the last of n pods scheduled, with every LINSTOR request answered
// slowLatency (L) late:
//
//   - The first blocked pod wakes the loop at once; the pods blocked while
//     LINSTOR answers for it join its batch with one more read. Pods the
//     scheduler marks only later would make a second batch after the first
//     one's repairs. At most 3 reads: 3 x 3 L.
//   - With --workers=10 the repairs take R <= ceil(n/10) + 1 rounds (one more
//     than needed when the pods split into two batches); the last pod is
//     placed 8 L into the last round: x 10 L + 8 L.
//   - The 2-minute full read may fall between the batches (3 concurrent
//     lists, asked again for answers whose bytes changed): 2 L.
//   - The API server's part of each round (dry runs, retain, delete, create;
//     about 3 s on a loaded 2-core machine): 5 s per round; and 30 s for the
//     scheduler (its backoff of an unschedulable pod is at most 10 s).
//
// n = 10 (R = 2): 9 L + 10 L + 8 L + 2 L + 2 x 5 s + 30 s = 185 s.
// n = 50 (R = 6): 9 L + 50 L + 8 L + 2 L + 6 x 5 s + 30 s = 405 s.
// When all pods join one batch (as in this story) it is 2 reads and
// ceil(n/10) rounds: about 60 s for 10 pods, 260 s for 50.
func slowLinstorBound(n int) time.Duration {
	rounds := (n+defaultWorkers-1)/defaultWorkers + 1
	requests := 3*requestsPerRead + (rounds-1)*requestsPerRepair + requestsBeforePlacing + 2
	return time.Duration(requests)*slowLatency + time.Duration(rounds)*5*time.Second + 30*time.Second
}

// TestSlowLinstorWhilePodsWait: LINSTOR answers every request 5 s late
// while the pods of a StatefulSet wait for their volumes. Its n strict
// volumes (fast subset 10, full 50) and pods are on n1, next to 2n volumes
// of other workloads on n2 and n3. Node n1 is evacuated and rotated out of
// LINSTOR and Kubernetes (a third of the volumes move: the drift brake
// stays out of this story), the pods are deleted and recreated, and the real
// kube-scheduler finds no node for them: their PVs' affinity still names
// n1. The sidecar runs with its default --reconcile-rate (2 minutes), so
// the reads for blocked pods and their repairs do the work, every request
// of theirs (the reads of the blocked pods' volumes, LINSTOR CSI's
// ControllerGetVolume, the replica confirmation, the saved-state writes)
// 5 s late. Asserted: every pod is scheduled next to its data within
// slowLinstorBound; the sidecar saw each pod blocked and timed the repair
// it waited for; each moved PV was rewritten once, the others not at all;
// and the suite's invariants. Logged: the time to all scheduled,
// blocked_pod_repair_seconds, the LINSTOR requests made.
func TestSlowLinstorWhilePodsWait(t *testing.T) {
	began := time.Now()
	n := rounds(10, 50)
	repaired, lost := 0, 0
	defer func() { totals.add(1, 0, repaired, lost, 1) }()
	b, _ := startBed(t, testbed.Options{ReconcileRate: defaultReconcileRate})
	ctx := testContext(t, 30*time.Minute)
	w := &world{b: b, period: defaultReconcileRate}
	createClasses(ctx, t, b)
	moving := provision(ctx, t, w, "data-db", classStrict, "n1", n)
	others := provision(ctx, t, w, "other-a", classStrict, "n2", n)
	others = append(others, provision(ctx, t, w, "other-b", classStrict, "n3", n)...)
	step(t, began, "%d volumes provisioned: %d on n1, %d on n2 and n3", len(w.vols), len(moving), len(others))

	pods := make([]string, n)
	claimOf := map[string]*vol{}
	for i, v := range moving {
		pods[i] = strings.TrimPrefix(v.claim, "data-")
		claimOf[pods[i]] = v
	}
	createPods(ctx, t, b, pods, claimOf)
	wctx, cancel := within(ctx)
	placed, _, err := waitPodsScheduled(wctx, b, pods)
	cancel()
	must(t, err)
	for _, p := range pods {
		if placed[p] != "n1" {
			t.Fatalf("pod %s scheduled on %s, its data is on n1", p, placed[p])
		}
	}
	step(t, began, "%d pods running on n1", n)

	before := w.snapshot(ctx, t)
	mBefore, err := b.Metrics(ctx)
	must(t, err)
	reqBefore := b.Sim.RequestCounts()
	_, err = b.Sim.InjectFault(linstorsim.Fault{Kind: linstorsim.FaultDelay, Delay: slowLatency})
	must(t, err)
	defer b.Sim.ClearFaults()

	moves, err := b.Sim.EvacuateNode("n1")
	must(t, err)
	if len(moves) != n {
		t.Fatalf("evacuating n1 moved %d replicas, want %d", len(moves), n)
	}
	must(t, b.Sim.RemoveNode("n1"))
	must(t, b.DeleteKubeNode(ctx, "n1"))
	wctx, cancel = within(ctx)
	must(t, deletePods(wctx, b, pods))
	cancel()
	recreated := time.Now()
	createPods(ctx, t, b, pods, claimOf)
	step(t, began, "n1 evacuated and gone; LINSTOR answers %s late; %d pods recreated, Pending", slowLatency, n)

	bound := slowLinstorBound(n)
	wctx, cancel = context.WithTimeout(ctx, bound)
	placed, at, err := waitPodsScheduled(wctx, b, pods)
	cancel()
	if err != nil {
		t.Fatalf("not every pod scheduled within %s of their recreation: %v", bound, err)
	}
	var allScheduled time.Duration
	for _, p := range pods {
		allScheduled = max(allScheduled, at[p].Sub(recreated))
	}
	for _, p := range pods {
		nodes, err := b.Sim.DiskfulNodes(claimOf[p].pv)
		must(t, err)
		if !slices.Contains(nodes, placed[p]) {
			t.Errorf("pod %s scheduled on %s, its data is on %v", p, placed[p], nodes)
		}
	}
	var waits []float64
	for _, p := range pods {
		waits = append(waits, at[p].Sub(recreated).Seconds())
	}
	sort.Float64s(waits)
	step(t, began, "all %d pods scheduled next to their data %s after their recreation (pod p50 %.1f s; bound %s)",
		n, allScheduled.Round(100*time.Millisecond), waits[len(waits)/2], bound)

	lost = w.assertSettled(ctx, t)
	mAfter, err := b.Metrics(ctx)
	must(t, err)
	reqAfter := b.Sim.RequestCounts()
	b.Sim.ClearFaults()

	delta := func(name string, match map[string]string) float64 {
		return mAfter.Sum(name, match) - mBefore.Sum(name, match)
	}
	const prefix = "linstor_affinity_sidecar_"
	if got := delta(prefix+"repairs_total", map[string]string{"action": "replace", "result": "success"}); got != float64(n) {
		t.Errorf("%v successful replaces, want %d: one per moved PV, none of the others", got, n)
	}
	if got := delta(prefix+"blocked_pod_repair_seconds_count", nil); got != float64(n) {
		t.Errorf("blocked_pod_repair_seconds counted %v repairs, want %d: one per blocked pod", got, n)
	}
	demandReads := delta(prefix+"blocked_pod_reads_total", nil)
	if demandReads < 1 {
		t.Errorf("no read for blocked pods")
	}
	for _, v := range others {
		pv, err := b.Kube.CoreV1().PersistentVolumes().Get(ctx, v.pv, metav1.GetOptions{})
		must(t, err)
		if now := stateOf(pv); now != before.pvs[v.pv] {
			t.Errorf("PV %s did not move but was rewritten: before %+v, now %+v", v.pv, before.pvs[v.pv], now)
		}
	}

	reqs := requestDelta(reqBefore, reqAfter)
	var total int64
	var routes []string
	for _, r := range slices.Sorted(maps.Keys(reqs)) {
		total += reqs[r]
		routes = append(routes, fmt.Sprintf("%s: %d", r, reqs[r]))
	}
	q := histogram(mAfter, prefix+"blocked_pod_repair_seconds").minus(histogram(mBefore, prefix+"blocked_pod_repair_seconds"))
	mean := delta(prefix+"blocked_pod_repair_seconds_sum", nil) / q.count
	t.Logf("slow LINSTOR (%s per request), %d pods: all scheduled %s after their recreation; blocked_pod_repair_seconds (%v repairs) mean %.1f s, p50 %.1f s (interpolated in its bucket), max <= %s s (bucket bound); reads for blocked pods %v, full reads %v; LINSTOR requests during the case %d (%.1f per pod): %s",
		slowLatency, n, allScheduled.Round(100*time.Millisecond), q.count, mean, q.quantile(0.5), q.maxBound(),
		demandReads, delta(prefix+"linstor_fetch_duration_seconds_count", nil), total, float64(total)/float64(n), strings.Join(routes, ", "))
	if !t.Failed() {
		repaired = n
	}
}

// createPods creates the pods, each using its volume's claim, as a
// StatefulSet with parallel pod management does.
func createPods(ctx context.Context, t *testing.T, b *testbed.Bed, pods []string, claimOf map[string]*vol) {
	t.Helper()
	for _, p := range pods {
		_, err := b.CreatePod(ctx, p, claimOf[p].claim, nil)
		must(t, err)
	}
}

// deletePods deletes the pods at once (grace period 0: their node is gone)
// and waits until none of them is left.
func deletePods(ctx context.Context, b *testbed.Bed, pods []string) error {
	for _, p := range pods {
		err := b.Kube.CoreV1().Pods(testbed.Namespace).Delete(ctx, p, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete pod %s: %w", p, err)
		}
	}
	want := map[string]bool{}
	for _, p := range pods {
		want[p] = true
	}
	return testbed.Poll(ctx, fmt.Sprintf("%d pods gone", len(pods)), func(ctx context.Context) (bool, string) {
		list, err := b.Kube.CoreV1().Pods(testbed.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		left := 0
		for _, p := range list.Items {
			if want[p.Name] {
				left++
			}
		}
		return left == 0, fmt.Sprintf("%d left", left)
	})
}

// waitPodsScheduled waits until every pod has a node, looking with one List
// per poll, and returns each pod's node and when it was first seen there.
func waitPodsScheduled(ctx context.Context, b *testbed.Bed, pods []string) (map[string]string, map[string]time.Time, error) {
	nodes := map[string]string{}
	at := map[string]time.Time{}
	want := map[string]bool{}
	for _, p := range pods {
		want[p] = true
	}
	err := testbed.Poll(ctx, fmt.Sprintf("%d pods scheduled", len(pods)), func(ctx context.Context) (bool, string) {
		list, err := b.Kube.CoreV1().Pods(testbed.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var waiting []string
		for _, p := range list.Items {
			if !want[p.Name] {
				continue
			}
			if p.Spec.NodeName == "" {
				waiting = append(waiting, p.Name)
				continue
			}
			if _, seen := at[p.Name]; !seen {
				nodes[p.Name], at[p.Name] = p.Spec.NodeName, time.Now()
			}
		}
		return len(at) == len(pods), fmt.Sprintf("%d of %d scheduled; waiting: %v", len(at), len(pods), waiting)
	})
	return nodes, at, err
}

// requestDelta is the LINSTOR requests per route between two counts.
func requestDelta(before, after map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// hist is a scraped Prometheus histogram: cumulative counts by upper bound.
type hist struct {
	bounds []float64 // ascending, +Inf last
	counts []float64
	count  float64
}

func histogram(m testbed.Metrics, name string) hist {
	byBound := map[float64]float64{}
	for _, s := range m.Series(name + "_bucket") {
		le, err := strconv.ParseFloat(s.Labels["le"], 64)
		if err == nil {
			byBound[le] = s.Value
		}
	}
	var h hist
	h.bounds = slices.Sorted(maps.Keys(byBound))
	for _, le := range h.bounds {
		h.counts = append(h.counts, byBound[le])
	}
	h.count = m.Sum(name+"_count", nil)
	return h
}

// minus is h with the observations of an earlier scrape of it taken out.
func (h hist) minus(earlier hist) hist {
	out := hist{bounds: h.bounds, counts: slices.Clone(h.counts), count: h.count - earlier.count}
	for i := range out.counts {
		if i < len(earlier.counts) {
			out.counts[i] -= earlier.counts[i]
		}
	}
	return out
}

// quantile interpolates within the bucket holding the q-quantile, as
// Prometheus' histogram_quantile does.
func (h hist) quantile(q float64) float64 {
	if h.count == 0 || len(h.bounds) == 0 {
		return math.NaN()
	}
	rank := q * h.count
	lower, below := 0.0, 0.0
	for i, le := range h.bounds {
		if h.counts[i] >= rank {
			if math.IsInf(le, 1) {
				return lower
			}
			return lower + (le-lower)*(rank-below)/(h.counts[i]-below)
		}
		lower, below = le, h.counts[i]
	}
	return lower
}

// maxBound is the upper bound of the lowest bucket holding every
// observation: a histogram keeps no maximum.
func (h hist) maxBound() string {
	for i, le := range h.bounds {
		if h.counts[i] >= h.count {
			return strconv.FormatFloat(le, 'g', -1, 64)
		}
	}
	return "+Inf"
}

// Command demo shows the sidecar heal strict-affinity volumes when a node is
// rotated out, on a local test bed (see package testbed): a real control
// plane, the LINSTOR simulator, LINSTOR CSI, the external-provisioner and
// the sidecar as a separate process.
//
//	go run ./test/demo [-sidecar PATH] [-logs DIR] [-heal-timeout 60s]
//
// It prints a timeline of what happened and a summary, tears everything
// down (also on Ctrl-C), and exits non-zero when the pods were not running
// on their data's new nodes within the heal timeout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

func main() {
	os.Exit(run())
}

type config struct {
	sidecar     string
	logDir      string
	healTimeout time.Duration
}

func run() int {
	var c config
	flag.StringVar(&c.sidecar, "sidecar", "", "sidecar binary; empty builds it from this checkout")
	flag.StringVar(&c.logDir, "logs", "", "keep every component's log in this directory")
	flag.DurationVar(&c.healTimeout, "heal-timeout", 60*time.Second, "how long the pods may take to run again after the node is gone")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := demo(ctx, c)
	if errors.Is(ctx.Err(), context.Canceled) {
		fmt.Println("\ninterrupted; everything stopped")
		return 130
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo failed: %v\n", err)
		return 1
	}
	return 0
}

// volume is one workload: a claim, its PV, its pod.
type volume struct {
	claim, pv, pod string
}

func demo(ctx context.Context, c config) error {
	fmt.Println("linstor-affinity-sidecar demo: a node is rotated out from under strict-affinity volumes")
	fmt.Println()
	if c.sidecar == "" {
		dir, err := os.MkdirTemp("", "demo-sidecar-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir) //nolint:errcheck // best effort
		fmt.Print("  building the sidecar ... ")
		if c.sidecar, err = testbed.BuildSidecar(ctx, dir); err != nil {
			return err
		}
		fmt.Println("done")
	}

	fmt.Print("  starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler, LINSTOR (simulated),\n" +
		"  LINSTOR CSI v1.6.4, csi-provisioner and the sidecar ... ")
	began := time.Now()
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	b, err := testbed.Start(startCtx, testbed.Options{SidecarBinary: c.sidecar, LogDir: c.logDir, LeaderElection: true,
		// The sidecar's default: its full LINSTOR read every 2 minutes falls
		// outside the demo; the blocked pods are what get their volumes read.
		ReconcileRate: 2 * time.Minute})
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		fmt.Print("\n  tearing down ... ")
		if err := b.Stop(); err != nil {
			fmt.Printf("%v\n", err)
			return
		}
		fmt.Println("done")
	}()
	fmt.Printf("ready in %.1fs\n", time.Since(began).Seconds())

	vols, err := setup(ctx, b)
	if err != nil {
		return err
	}

	fmt.Println()
	fmt.Println("Rotating node n1 out (LINSTOR evacuates it, the node is drained and deleted):")
	tl, healed, err := rotate(ctx, b, vols, c.healTimeout)
	if tl != nil {
		fmt.Println()
		if perr := tl.Print(os.Stdout); perr != nil {
			return perr
		}
	}
	if err != nil {
		return err
	}
	fmt.Println()
	return summary(ctx, b, vols, tl, healed)
}

// setup creates the strict StorageClass, three volumes on n1 with a pod
// each, and a few volumes elsewhere, as a cluster has.
func setup(ctx context.Context, b *testbed.Bed) ([]volume, error) {
	if err := b.CreateStorageClass(ctx, testbed.StorageClass{Name: "strict", Policy: testbed.PolicyStrict}); err != nil {
		return nil, err
	}
	var claims []testbed.Claim
	for i := range 3 {
		claims = append(claims, testbed.Claim{Name: fmt.Sprintf("data-db-%d", i), StorageClass: "strict", Node: "n1"})
	}
	for i, node := range []string{"n2", "n3", "n4", "n2"} {
		claims = append(claims, testbed.Claim{Name: fmt.Sprintf("cache-%d", i), StorageClass: "strict", Node: node})
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	pvs, err := b.ProvisionVolumes(wctx, claims...)
	if err != nil {
		return nil, err
	}
	var vols []volume
	for i := range 3 {
		v := volume{claim: claims[i].Name, pv: pvs[claims[i].Name].Name, pod: fmt.Sprintf("db-%d", i)}
		if _, err := b.CreatePod(ctx, v.pod, v.claim, nil); err != nil {
			return nil, err
		}
		vols = append(vols, v)
	}
	for _, v := range vols {
		node, err := b.WaitPodScheduled(wctx, v.pod)
		if err != nil {
			return nil, err
		}
		if node != "n1" {
			return nil, fmt.Errorf("pod %s scheduled on %s, its volume is on n1", v.pod, node)
		}
	}
	fmt.Printf("  StorageClass strict: allowRemoteVolumeAccess \"false\", 1 replica, WaitForFirstConsumer\n")
	for _, v := range vols {
		fmt.Printf("  %s: claim %s, PV %s, affinity n1, pod running on n1\n", v.pod, v.claim, v.pv)
	}
	fmt.Printf("  (and 4 more volumes on n2, n3, n4 that stay where they are)\n")
	return vols, nil
}

// rotate takes n1 away as an ephemeral-node rotation does, recreates the
// pods as their StatefulSet would, and records everything until every pod
// is scheduled again or the timeout passes.
func rotate(ctx context.Context, b *testbed.Bed, vols []volume, timeout time.Duration) (*testbed.Timeline, bool, error) {
	start := time.Now()
	tl := testbed.NewTimeline(start)
	pvToPod := map[string]string{}
	for _, v := range vols {
		pvToPod[v.pv] = v.pod
	}

	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	pods := watchPods(watchCtx, b, tl, vols)
	logDone := followSidecar(watchCtx, b, tl, pvToPod)

	moves, err := b.Sim.EvacuateNode("n1")
	if err != nil {
		return tl, false, err
	}
	at := time.Now()
	for _, m := range moves {
		if pod, ok := pvToPod[m.ResourceDefinition]; ok {
			tl.Add(at, "LINSTOR: volume %s (%s) replica moved %s -> %s", short(m.ResourceDefinition), pod, m.From, m.To)
		}
	}
	for _, v := range vols {
		if err := b.DeletePod(ctx, v.pod); err != nil {
			return tl, false, err
		}
		tl.Add(time.Now(), "drain: pod %s deleted from n1", v.pod)
	}
	if err := b.DeleteKubeNode(ctx, "n1"); err != nil {
		return tl, false, err
	}
	if err := b.Sim.RemoveNode("n1"); err != nil {
		return tl, false, err
	}
	tl.Add(time.Now(), "node n1 deleted from Kubernetes and LINSTOR")
	for _, v := range vols {
		if _, err := b.CreatePod(ctx, v.pod, v.claim, nil); err != nil {
			return tl, false, err
		}
		tl.Add(time.Now(), "pod %s recreated by its StatefulSet", v.pod)
	}

	wctx, cancel := context.WithDeadline(ctx, start.Add(timeout))
	defer cancel()
	healed := testbed.Poll(wctx, "every pod scheduled", func(context.Context) (bool, string) {
		n := pods.scheduledCount()
		return n == len(vols), fmt.Sprintf("%d of %d pods scheduled", n, len(vols))
	}) == nil
	if ctx.Err() != nil {
		return tl, false, ctx.Err()
	}
	// Let the sidecar's last log lines arrive before the timeline prints.
	time.Sleep(300 * time.Millisecond)
	stopWatching()
	<-logDone
	return tl, healed, nil
}

// podTracker records the pods' scheduling into the timeline.
type podTracker struct {
	mu        sync.Mutex
	scheduled map[string]string
}

func (p *podTracker) scheduledCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.scheduled)
}

// watchPods polls the demo pods and records when each is seen pending and
// when the scheduler places it.
func watchPods(ctx context.Context, b *testbed.Bed, tl *testbed.Timeline, vols []volume) *podTracker {
	p := &podTracker{scheduled: map[string]string{}}
	go func() {
		pending := map[string]bool{}
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			for _, v := range vols {
				p.mu.Lock()
				_, done := p.scheduled[v.pod]
				p.mu.Unlock()
				if done {
					continue
				}
				pod, err := b.Kube.CoreV1().Pods(testbed.Namespace).Get(ctx, v.pod, metav1.GetOptions{})
				if err != nil || pod.DeletionTimestamp != nil || pod.Spec.NodeName == "n1" {
					continue // the old pod, not yet replaced
				}
				if pod.Spec.NodeName != "" {
					p.mu.Lock()
					p.scheduled[v.pod] = pod.Spec.NodeName
					p.mu.Unlock()
					tl.Add(time.Now(), "kube-scheduler: pod %s scheduled on %s", v.pod, pod.Spec.NodeName)
					continue
				}
				for _, c := range pod.Status.Conditions {
					if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && !pending[v.pod] {
						pending[v.pod] = true
						tl.Add(time.Now(), "kube-scheduler: pod %s Pending: %s", v.pod, firstSentence(c.Message))
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// followSidecar turns the sidecar's log lines into timeline entries, at the
// time the sidecar logged them.
func followSidecar(ctx context.Context, b *testbed.Bed, tl *testbed.Timeline, pvToPod map[string]string) <-chan struct{} {
	done := make(chan struct{})
	f := testbed.NewLogFollower(b.SidecarLogPath())
	_, _ = f.Next() // start from now
	go func() {
		defer close(done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			lines, _ := f.Next()
			for _, l := range lines {
				pv := l.Fields["pv"]
				if _, ours := pvToPod[pv]; !ours {
					continue
				}
				switch l.Msg {
				case "Updated PV affinity":
					tl.Add(l.Time, "sidecar: repaired PV %s in %s (%s): affinity %s", short(pv),
						humanDuration(l.Fields["duration"]), l.Fields["method"], shortAffinity(l.Fields["affinity"]))
				case "Cannot handle volume", "Repair failed; will decide again next cycle":
					detail := l.Fields["detail"]
					if detail == "" {
						detail = l.Fields["err"]
					}
					tl.Add(l.Time, "sidecar: PV %s not repaired yet: %s", short(pv), detail)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return done
}

// summary checks the outcome and prints it.
func summary(ctx context.Context, b *testbed.Bed, vols []volume, tl *testbed.Timeline, healed bool) error {
	lines, err := b.SidecarLog("Updated PV affinity")
	if err != nil {
		return err
	}
	var durations []string
	methods := map[string]int{}
	for _, l := range lines {
		durations = append(durations, humanDuration(l.Fields["duration"]))
		methods[l.Fields["method"]]++
	}
	bound := 0
	for _, v := range vols {
		pvc, err := b.Kube.CoreV1().PersistentVolumeClaims(testbed.Namespace).Get(ctx, v.claim, metav1.GetOptions{})
		if err == nil && pvc.Status.Phase == corev1.ClaimBound && pvc.Spec.VolumeName == v.pv {
			bound++
		}
	}
	deleted := len(b.Sim.VolumeDeletions())
	last := 0.0
	for _, e := range tl.Entries() {
		if strings.Contains(e.Text, " scheduled on ") {
			last = e.At.Sub(tl.Start()).Seconds()
		}
	}
	var ms []string
	for m, n := range methods {
		ms = append(ms, fmt.Sprintf("%d by %s", n, m))
	}
	sort.Strings(ms)
	fmt.Println("Summary:")
	fmt.Printf("  PVs repaired by the sidecar: %d (%s), each in %s\n", len(lines), strings.Join(ms, ", "), strings.Join(durations, ", "))
	fmt.Printf("  claims still Bound to the same PV: %d of %d\n", bound, len(vols))
	fmt.Printf("  LINSTOR volumes deleted: %d\n", deleted)
	if !healed {
		fmt.Printf("  NOT healed: not every pod was scheduled within the heal timeout\n")
		return errors.New("the pods did not run again within the heal timeout")
	}
	fmt.Printf("  every pod running next to its data again %.1fs after the rotation began\n", last)
	if bound != len(vols) || deleted != 0 {
		return errors.New("healed, but claims or volumes were lost")
	}
	return nil
}

// short abbreviates a PV name to its first 12 characters (pvc-1234abcd).
func short(pv string) string {
	if len(pv) > 12 {
		return pv[:12]
	}
	return pv
}

// humanDuration renders a Go duration string as e.g. "85 ms".
func humanDuration(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil {
		return s
	}
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

var affinityValue = regexp.MustCompile(`=([^}\s]+)`)

// shortAffinity turns the sidecar's rendering of an affinity, e.g.
// [{linbit.com/hostname=n2} {linbit.com/hostname=n3}], into "n2,n3".
func shortAffinity(s string) string {
	var vals []string
	for _, m := range affinityValue.FindAllStringSubmatch(s, -1) {
		vals = append(vals, m[1])
	}
	if len(vals) == 0 {
		return s
	}
	return strings.Join(vals, ",")
}

// firstSentence keeps the scheduler's message up to its first full stop.
func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i > 0 {
		return s[:i]
	}
	return s
}

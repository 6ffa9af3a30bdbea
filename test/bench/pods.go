package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// podApp labels the bench's pods.
const podApp = "bench-blocked"

// podResult is measurement (a): from a replica move to the pod that waits
// for the volume scheduled by kube-scheduler.
type podResult struct {
	K               int     `json:"k"`
	IntervalSeconds float64 `json:"intervalSeconds"`
	Latency         summary `json:"latency"`
	// WrongNode counts pods scheduled elsewhere than the volume's new node.
	WrongNode    int `json:"wrongNode"`
	NotScheduled int `json:"notScheduled"`
	// Repair is the sidecar's blocked_pod_repair_seconds over the run.
	Repair      histSummary `json:"blockedPodRepair"`
	DemandReads float64     `json:"blockedPodReads"`
}

type podWait struct {
	moved time.Time
	want  string
}

// podWatch records when each expected pod was first seen with a node, from
// an informer on the bench's pods, and deletes it then.
type podWatch struct {
	mu        sync.Mutex
	waiting   map[string]podWait
	latencies []time.Duration
	wrong     int
	stopped   bool // no more deletes: stop is waiting for those begun
	changed   chan struct{}
	remove    func(name string)
}

func (b *bed) watchPods(ctx context.Context) (*podWatch, func(), error) {
	w := &podWatch{waiting: map[string]podWait{}, changed: make(chan struct{}, 1)}
	wctx, cancel := context.WithCancel(ctx)
	var deletes sync.WaitGroup
	w.remove = func(name string) {
		deletes.Add(1)
		go func() {
			defer deletes.Done()
			if err := b.deletePod(wctx, name); err != nil && wctx.Err() == nil {
				b.logf("%v", err)
			}
		}()
	}
	f := informers.NewSharedInformerFactoryWithOptions(b.kube, 0, informers.WithNamespace(metav1.NamespaceDefault),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = "app=" + podApp }))
	inf := f.Core().V1().Pods().Informer()
	seen := func(obj any) {
		if pod, ok := obj.(*corev1.Pod); ok && pod.Spec.NodeName != "" {
			w.scheduled(pod.Name, pod.Spec.NodeName, time.Now())
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    seen,
		UpdateFunc: func(_, obj any) { seen(obj) },
	}); err != nil {
		cancel()
		return nil, nil, err
	}
	f.Start(wctx.Done())
	if !cache.WaitForCacheSync(wctx.Done(), inf.HasSynced) {
		cancel()
		return nil, nil, fmt.Errorf("pod informer did not sync")
	}
	stop := func() {
		w.mu.Lock()
		w.stopped = true
		w.mu.Unlock()
		deletes.Wait()
		cancel()
		f.Shutdown()
	}
	return w, stop, nil
}

func (w *podWatch) expect(pod, node string, moved time.Time) {
	w.mu.Lock()
	w.waiting[pod] = podWait{moved: moved, want: node}
	w.mu.Unlock()
}

func (w *podWatch) scheduled(pod, node string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.waiting[pod]
	if !ok || w.stopped {
		return
	}
	delete(w.waiting, pod)
	w.latencies = append(w.latencies, at.Sub(p.moved))
	if node != p.want {
		w.wrong++
	}
	w.remove(pod)
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// wait blocks until no expected pod waits any more, or timeout; it
// returns the names of the pods still waiting.
func (w *podWatch) wait(ctx context.Context, timeout time.Duration) []string {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		var left []string
		for name := range w.waiting {
			left = append(left, name)
		}
		w.mu.Unlock()
		if len(left) == 0 {
			return nil
		}
		select {
		case <-w.changed:
		case <-deadline.C:
			return left
		case <-ctx.Done():
			return left
		}
	}
}

// deletePod deletes a bench pod at once (no kubelet would confirm a
// graceful end).
func (b *bed) deletePod(ctx context.Context, name string) error {
	err := b.kube.CoreV1().Pods(metav1.NamespaceDefault).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s: %w", name, err)
	}
	return nil
}

// moveClaimed moves the only replica of a volume with a claim, not used
// yet, from its departing node to a node with a Kubernetes Node, and
// returns the volume and that node.
func (b *bed) moveClaimed(used map[string]bool) (*volume, string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, v := range b.vols {
		if !v.claim || used[v.name] {
			continue
		}
		from, to := v.nodes[0], nodeName(b.rng.IntN(nodeCount))
		if err := b.sim.MoveReplica(v.name, from, to); err != nil {
			return nil, "", err
		}
		v.nodes = []string{to}
		used[v.name] = true
		return v, to, nil
	}
	return nil, "", fmt.Errorf("no volume with a claim left to move (raise the claims made at setup)")
}

// blockedPods is measurement (a): k times, one every interval, it moves the
// only replica of a strict volume with a claim off its departing node, as
// a node rotation does, and creates a pod using the claim (no node
// selector); the scheduler finds no node for it until the PV's affinity
// names the new node. Each latency is from the move until the
// pod informer shows the pod with a node; the pod is deleted then.
func (b *bed) blockedPods(ctx context.Context, k int, interval, timeout time.Duration, used map[string]bool, prefix string) (podResult, error) {
	r := podResult{K: k, IntervalSeconds: interval.Seconds()}
	before, err := scrape(ctx, b.sidecar.url)
	if err != nil {
		return r, err
	}
	w, stop, err := b.watchPods(ctx)
	if err != nil {
		return r, err
	}
	defer stop()
	for i := 0; i < k; i++ {
		v, to, err := b.moveClaimed(used)
		if err != nil {
			return r, err
		}
		name := fmt.Sprintf("%s-%03d", prefix, i)
		w.expect(name, to, time.Now())
		if _, err := b.kube.CoreV1().Pods(metav1.NamespaceDefault).Create(ctx, testbed.ClaimPod(name, v.claimName(), podApp), metav1.CreateOptions{}); err != nil {
			return r, fmt.Errorf("create pod %s: %w", name, err)
		}
		if i < k-1 {
			if err := sleepUntil(ctx, time.Now().Add(interval)); err != nil {
				return r, err
			}
		}
	}
	left := w.wait(ctx, timeout)
	for _, name := range left {
		if err := b.deletePod(ctx, name); err != nil {
			return r, err
		}
	}
	after, err := scrape(ctx, b.sidecar.url)
	if err != nil {
		return r, err
	}
	w.mu.Lock()
	r.Latency, r.WrongNode, r.NotScheduled = summarize(w.latencies), w.wrong, len(left)
	w.mu.Unlock()
	const repair = "linstor_affinity_sidecar_blocked_pod_repair_seconds"
	r.Repair = histogramsOf(after, repair, nil, "")[""].minus(histogramsOf(before, repair, nil, "")[""]).summary()
	r.DemandReads = sum(after, "linstor_affinity_sidecar_blocked_pod_reads_total", nil) - sum(before, "linstor_affinity_sidecar_blocked_pod_reads_total", nil)
	return r, nil
}

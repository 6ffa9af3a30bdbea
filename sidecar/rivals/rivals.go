// Package rivals finds other affinity controllers at work in the cluster, so
// the sidecar never rewrites PVs while one of them might rewrite the same PVs:
// the upstream LINSTOR Affinity Controller, deployed by Piraeus Operator, by
// its Helm chart or by hand.
//
// Detection does not depend on a Lease name, which the installer picks. It
// looks at running pods instead, with the permissions the LINSTOR CSI
// controller's service account already has (pods list and watch, cluster
// wide):
//
//   - Candidate pods are found by label, one informer per selector, so the
//     API server sends only those pods and the cache holds only them. The
//     defaults cover the operator (app.kubernetes.io/component=
//     linstor-affinity-controller) and the upstream Helm chart
//     (app.kubernetes.io/name=linstor-affinity-controller). The empty
//     selector watches every running pod, for controllers deployed by hand
//     with other labels; that costs a watch of all running pods (each cached
//     reduced to names and images, a few hundred bytes).
//   - A candidate counts when it is running (phase Running, terminating
//     included: it may still write until it is gone), is not the sidecar's
//     own pod, and has a container that is the upstream controller: its image
//     repository ends in /linstor-affinity-controller (any registry, tag or
//     digest) or the container is named linstor-affinity-controller.
//
// Until every informer has synced, Active reports true: whether another
// controller runs is not known yet, and writing is what must wait.
package rivals

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// UpstreamName is the name of the upstream controller: the last element of
// its image repository, its container name in the operator's Deployment and
// in the Helm chart, and the value of the labels the operator and the chart
// put on its pods.
const UpstreamName = "linstor-affinity-controller"

// DefaultSelectors select the pods of the upstream controller as Piraeus
// Operator and the upstream Helm chart (with its default name) label them.
func DefaultSelectors() []string {
	return []string{
		"app.kubernetes.io/component=" + UpstreamName,
		"app.kubernetes.io/name=" + UpstreamName,
	}
}

// Options configure a Watcher.
type Options struct {
	// Selectors are label selectors of candidate pods, one informer each;
	// "" watches every running pod. Nil means DefaultSelectors.
	Selectors []string
	// Self is the sidecar's own pod, never counted (zero: none).
	Self types.NamespacedName
	// Resync is the informers' resync period (0: none; events suffice).
	Resync time.Duration
}

// Watcher keeps track of running pods of other affinity controllers.
type Watcher struct {
	self      types.NamespacedName
	factories []informers.SharedInformerFactory
	synced    []cache.InformerSynced
	stores    []cache.Store
	changed   chan struct{}

	// computing serializes recompute, so an older answer never overwrites a
	// newer one.
	computing sync.Mutex

	mu       sync.Mutex
	active   bool
	detail   string
	computed bool
}

// New prepares a Watcher; Start starts it. Selectors that do not parse are an
// error.
func New(kube kubernetes.Interface, o Options) (*Watcher, error) {
	sels := o.Selectors
	if sels == nil {
		sels = DefaultSelectors()
	}
	if len(sels) == 0 {
		return nil, fmt.Errorf("no pod selector to watch")
	}
	w := &Watcher{self: o.Self, changed: make(chan struct{}, 1)}
	running := fields.OneTermEqualSelector("status.phase", string(corev1.PodRunning)).String()
	for _, sel := range sels {
		if _, err := labels.Parse(sel); err != nil {
			return nil, fmt.Errorf("pod selector %q: %w", sel, err)
		}
		f := informers.NewSharedInformerFactoryWithOptions(kube, o.Resync,
			informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
				lo.LabelSelector = sel
				lo.FieldSelector = running
			}),
			informers.WithTransform(reduce))
		inf := f.Core().V1().Pods().Informer()
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { w.recompute() },
			UpdateFunc: func(any, any) { w.recompute() },
			DeleteFunc: func(any) { w.recompute() },
		}); err != nil {
			return nil, err
		}
		w.factories = append(w.factories, f)
		w.synced = append(w.synced, inf.HasSynced)
		w.stores = append(w.stores, inf.GetStore())
	}
	return w, nil
}

// Start starts the informers; they stop with ctx. It does not wait for them
// to sync: until they have, Active reports true.
func (w *Watcher) Start(ctx context.Context) {
	for _, f := range w.factories {
		f.Start(ctx.Done())
	}
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), w.synced...) {
			w.recompute()
		}
	}()
}

// HasSynced tells whether every informer has its first list.
func (w *Watcher) HasSynced() bool {
	for _, s := range w.synced {
		if !s() {
			return false
		}
	}
	return true
}

// Active tells whether another affinity controller runs (or whether that is
// not known yet), and says which pods, or why not known, in detail.
func (w *Watcher) Active() (bool, string) {
	if !w.HasSynced() {
		return true, "not known yet whether another affinity controller runs: the pod watch has not synced"
	}
	w.mu.Lock()
	computed := w.computed
	w.mu.Unlock()
	if !computed {
		w.recompute()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.active, w.detail
}

// Changed receives a value after Active's answer changed. Changes coalesce:
// read Active after each receive. One receiver.
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

// recompute derives the answer from the caches and signals a change.
func (w *Watcher) recompute() {
	if !w.HasSynced() {
		return
	}
	w.computing.Lock()
	defer w.computing.Unlock()
	seen := map[types.UID]bool{}
	var found []string
	for _, s := range w.stores {
		for _, obj := range s.List() {
			pod, ok := obj.(*corev1.Pod)
			if !ok || seen[pod.UID] {
				continue
			}
			seen[pod.UID] = true
			if d, ok := w.rival(pod); ok {
				found = append(found, d)
			}
		}
	}
	sort.Strings(found)
	active, detail := len(found) > 0, "no other affinity controller runs"
	switch len(found) {
	case 0:
	case 1:
		detail = found[0]
	default:
		detail = fmt.Sprintf("%s (and %d more)", found[0], len(found)-1)
	}
	w.mu.Lock()
	change := !w.computed || active != w.active || detail != w.detail
	w.active, w.detail, w.computed = active, detail, true
	w.mu.Unlock()
	if change {
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
}

// rival tells whether pod is another affinity controller, and describes it.
func (w *Watcher) rival(pod *corev1.Pod) (string, bool) {
	if pod.Status.Phase != corev1.PodRunning {
		return "", false
	}
	if w.self.Name != "" && pod.Namespace == w.self.Namespace && pod.Name == w.self.Name {
		return "", false
	}
	for _, c := range pod.Spec.Containers {
		if IsUpstreamContainer(c.Name, c.Image) {
			return fmt.Sprintf("pod %s/%s, container %s, image %s", pod.Namespace, pod.Name, c.Name, c.Image), true
		}
	}
	return "", false
}

// IsUpstreamContainer tells whether a container runs the upstream affinity
// controller: its image repository's last element or its name is
// linstor-affinity-controller.
func IsUpstreamContainer(name, image string) bool {
	return name == UpstreamName || imageBaseName(image) == UpstreamName
}

// imageBaseName strips registry, path, tag and digest from an image
// reference: "quay.io/piraeusdatastore/x:v1@sha256:..." -> "x".
func imageBaseName(image string) string {
	if i := strings.IndexByte(image, '@'); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndexByte(image, '/'); i >= 0 {
		image = image[i+1:]
	}
	if i := strings.IndexByte(image, ':'); i >= 0 {
		image = image[:i]
	}
	return image
}

// reduce keeps of a pod what the decision reads, so the cache holds a few
// hundred bytes per pod: name, namespace, UID, phase, container names and
// images.
func reduce(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	small := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID,
			ResourceVersion: pod.ResourceVersion, DeletionTimestamp: pod.DeletionTimestamp,
		},
		Status: corev1.PodStatus{Phase: pod.Status.Phase},
	}
	for _, c := range pod.Spec.Containers {
		small.Spec.Containers = append(small.Spec.Containers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	return small, nil
}

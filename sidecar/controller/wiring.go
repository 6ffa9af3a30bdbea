package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/kubecache"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/repair"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// DefaultMinDrifted is the sidecar's Brakes.MinDrifted: the drift brake
// leaves a cycle alone that would rewrite this many PVs or fewer, however
// small a fraction of the PVs they are; a small cluster's rotation of one
// node is not a runaway.
const DefaultMinDrifted = 5

// Sources are what the controller lists and watches.
type Sources struct {
	// PVs and StorageClasses fill the loop's caches.
	PVs, StorageClasses cache.ListerWatcher
	// PendingPods, when set, lists the unscheduled Pending pods
	// (PendingPodSelector): the loop then repairs the PVs that keep one of
	// them from being scheduled first (Options.Blocked). Nil: it does not.
	PendingPods cache.ListerWatcher
	// Others, when set, tells whether another affinity controller is active
	// (sidecar/rivals): no new repair starts while one is, and the loop
	// decides again when that changes. Its owner starts it.
	Others OtherControllers
}

// OtherControllers is an OtherController that also says when its answer
// may have changed and whether its cache is filled.
type OtherControllers interface {
	OtherController
	Changed() <-chan struct{}
	HasSynced() bool
}

// KubeSources lists and watches through the clientset: PVs, StorageClasses
// and, with pendingPods, the unscheduled Pending pods (a field selector, so
// the API server sends no other pod). PVs are decoded compact straight from
// the API server's JSON (PVListerWatcher), most of the sidecar's memory at
// scale; a clientset without a REST client (client-go's fake) gets the typed
// watch. The others use the API server's watch-list stream unless the
// clientset says it cannot (the fake again).
func KubeSources(kube kubernetes.Interface, pendingPods bool) Sources {
	src := Sources{StorageClasses: listWatch(kube,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return kube.StorageV1().StorageClasses().List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return kube.StorageV1().StorageClasses().Watch(ctx, o)
		})}
	if rc, ok := kube.CoreV1().RESTClient().(*rest.RESTClient); ok && rc != nil {
		src.PVs = kubecache.NewPVListerWatcher(rc)
	} else {
		src.PVs = listWatch(kube,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return kube.CoreV1().PersistentVolumes().List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return kube.CoreV1().PersistentVolumes().Watch(ctx, o)
			})
	}
	if pendingPods {
		src.PendingPods = listWatch(kube,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.FieldSelector = PendingPodSelector
				return kube.CoreV1().Pods("").List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.FieldSelector = PendingPodSelector
				return kube.CoreV1().Pods("").Watch(ctx, o)
			})
	}
	return src
}

// listWatch is a typed list and watch through the clientset, with the API
// server's watch-list stream unless the clientset says it cannot.
func listWatch(kube kubernetes.Interface, list cache.ListWithContextFunc, watch cache.WatchFuncWithContext) cache.ListerWatcher {
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{ListWithContextFunc: list, WatchFuncWithContext: watch}, kube)
}

// Controller is the reconcile loop with the watches that feed it. Its
// constructor registers every event handler: which changes wake the loop,
// which make it decide anew although LINSTOR did not change
// (NoteInputChange), and which send it to blocked pods. Its caller only
// starts it.
//
// The PV and StorageClass caches are kept by watches of the sidecar's own
// (Watch), which resume within 2 s after an API server restart; PVs and
// StorageClasses are kept without managedFields (compact PVs have none).
type Controller struct {
	rec          *Reconciler
	pvs, scs     *kubecache.Watch
	pods         *kubecache.Watch // nil without Sources.PendingPods
	others       OtherControllers
	wake, demand chan struct{}
}

// NewController builds the loop (NewReconciler) on caches of src and
// registers its event handlers. driver may be nil (standalone mode).
func NewController(src Sources, opts Options, linstor LinstorSource, driver Driver, exec *repair.Executor,
	recorder record.EventRecorder, metrics *Metrics) *Controller {
	c := &Controller{others: src.Others, wake: make(chan struct{}, 1), demand: make(chan struct{}, 1)}
	driverName := opts.DriverName
	c.pvs = kubecache.NewWatch("persistentvolumes", src.PVs, &corev1.PersistentVolume{}, stripManagedFields, c.inputChanged(func(obj any) bool {
		pv, ok := obj.(*corev1.PersistentVolume)
		return ok && pv.Spec.CSI != nil && pv.Spec.CSI.Driver == driverName
	}))
	// Any StorageClass change may change a policy.
	c.scs = kubecache.NewWatch("storageclasses", src.StorageClasses, &storagev1.StorageClass{}, stripManagedFields, c.inputChanged(func(any) bool { return true }))
	if src.PendingPods != nil {
		if opts.Blocked == nil {
			opts.Blocked = NewBlocked()
		}
		blocked := opts.Blocked
		c.pods = kubecache.NewWatch("pending pods", src.PendingPods, &corev1.Pod{}, blocked.Transform, func(obj any) {
			if blocked.Changed(c.pods.Indexer(), obj) {
				poke(c.demand)
			}
		})
	}
	if src.Others != nil {
		opts.OtherController = src.Others
	}
	c.rec = NewReconciler(opts, corelisters.NewPersistentVolumeLister(c.pvs.Indexer()), storagelisters.NewStorageClassLister(c.scs.Indexer()),
		linstor, driver, exec, recorder, metrics)
	return c
}

// inputChanged is the handler of the PV and StorageClass watches: for every
// added, updated or deleted object that concerns says is the loop's, and
// after every relist (obj nil), the last decision no longer stands and the
// loop is woken (wake-ups coalesce).
func (c *Controller) inputChanged(concerns func(obj any) bool) func(obj any) {
	return func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if obj != nil && !concerns(obj) {
			return
		}
		c.rec.NoteInputChange()
		poke(c.wake)
	}
}

// poke signals ch without blocking: a signal already pending stands for
// this one too.
func poke(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Start runs the watches until ctx ends. A change of the other
// controllers' answer counts as an input change.
func (c *Controller) Start(ctx context.Context) {
	go c.pvs.Run(ctx)
	go c.scs.Run(ctx)
	if c.pods != nil {
		go c.pods.Run(ctx)
	}
	if c.others != nil {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-c.others.Changed():
					c.rec.NoteInputChange()
					poke(c.wake)
				}
			}
		}()
	}
}

// Synced reports whether the PV and StorageClass caches hold their first
// list: the loop's readiness.
func (c *Controller) Synced() bool { return c.pvs.HasSynced() && c.scs.HasSynced() }

// WaitForCacheSync waits until every cache the loop reads is filled; false
// when ctx ended first.
func (c *Controller) WaitForCacheSync(ctx context.Context) bool {
	waitFor := []cache.InformerSynced{c.pvs.HasSynced, c.scs.HasSynced}
	if c.pods != nil {
		waitFor = append(waitFor, c.pods.HasSynced)
	}
	if c.others != nil {
		waitFor = append(waitFor, c.others.HasSynced)
	}
	return cache.WaitForCacheSync(ctx.Done(), waitFor...)
}

// Run is Reconciler.Run, woken by the controller's watches.
func (c *Controller) Run(ctx context.Context, period time.Duration) {
	c.rec.Run(ctx, period, c.wake, c.demand)
}

// stripManagedFields drops metadata.managedFields from cached objects:
// nothing here reads them.
func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// DecideListed decides about every PV of pvs on view, with each PV's
// StorageClass from scs: the loop's list-and-decide step, and check's. It
// also returns how many PVs the driver has.
func DecideListed(pvs corelisters.PersistentVolumeLister, scs storagelisters.StorageClassLister, view *decide.View, cfg decide.Config, now time.Time) ([]decide.Action, int, error) {
	list, err := pvs.List(labels.Everything())
	if err != nil {
		return nil, 0, fmt.Errorf("list PVs from cache: %w", err)
	}
	decisions, total := decide.DecideAll(list, func(pv *corev1.PersistentVolume) *storagev1.StorageClass {
		return StorageClassFor(scs, pv)
	}, view, cfg, now)
	return decisions, total, nil
}

// Snapshot lists src's PVs and StorageClasses once, through the same lists
// and into the same kind of caches as the controller's, for a one-shot
// decision (check).
func Snapshot(ctx context.Context, src Sources) (corelisters.PersistentVolumeLister, storagelisters.StorageClassLister, error) {
	pvs, err := listOnce(ctx, "PVs", src.PVs)
	if err != nil {
		return nil, nil, err
	}
	scs, err := listOnce(ctx, "StorageClasses", src.StorageClasses)
	if err != nil {
		return nil, nil, err
	}
	return corelisters.NewPersistentVolumeLister(pvs), storagelisters.NewStorageClassLister(scs), nil
}

func listOnce(ctx context.Context, what string, lw cache.ListerWatcher) (cache.Indexer, error) {
	list, err := cache.ToListerWatcherWithContext(lw).ListWithContext(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, item := range items {
		obj, _ := stripManagedFields(item)
		if err := store.Add(obj); err != nil {
			return nil, fmt.Errorf("list %s: %w", what, err)
		}
	}
	return store, nil
}

// StorageClassFor is a helper for reports: the StorageClass a PV names, or nil.
func StorageClassFor(scs storagelisters.StorageClassLister, pv *corev1.PersistentVolume) *storagev1.StorageClass {
	if pv.Spec.StorageClassName == "" {
		return nil
	}
	sc, err := scs.Get(pv.Spec.StorageClassName)
	if err != nil {
		return nil
	}
	return sc
}

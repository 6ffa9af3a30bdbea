// Command linstor-affinity-sidecar runs next to the LINSTOR CSI controller and
// keeps every LINSTOR-backed PV's node affinity in sync with where LINSTOR keeps
// the volume's data. main only wires; the decisions live in package sidecar.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	lapi "github.com/LINBIT/golinstor/client"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/podconfig"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/rivals"
)

const component = "linstor-affinity-sidecar"

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if len(args) > 0 {
		switch args[0] {
		case "migrate-properties":
			migrateProperties(name, args[1:])
			return
		case "check":
			klog.Flush()
			os.Exit(runCheck(name, args[1:]))
		}
	}
	var c config
	fs := newFlagSet(name, &c)
	exitOnHelp(fs.Parse(args))
	if c.showVersion {
		fmt.Println(versionLine(component))
		return
	}
	if _, err := c.validate(); err != nil {
		fail("%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	klog.InfoS("Starting", "component", component, "version", version)
	tuneGC()

	// Before the first request, so the client metrics count every one.
	metrics := sidecar.NewMetrics()
	sidecar.RegisterKubeClientMetrics(metrics.Registry)
	// Health from the start: a liveness probe asks whether the process is
	// alive, and it is while it waits for the driver or the API server.
	// /readyz says why not yet until the driver answered and the caches
	// synced.
	h := newHealth()
	mux := http.NewServeMux()
	h.register(mux, c, metrics)
	if c.httpEndpoint != "" {
		go serveHTTP(ctx, c.httpEndpoint, mux)
	}

	restConfig, err := kubeConfig(c)
	if err != nil {
		fail("kubernetes configuration: %v", err)
	}
	kube := kubernetes.NewForConfigOrDie(restConfig)

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component})

	var csiFiles map[string]podconfig.File
	if c.csiAddress != "" {
		h.starting("reading the LINSTOR settings of container " + c.csiContainer)
		if csiFiles, err = adoptCSIContainerSettings(ctx, kube, &c, setFlags(fs), h, recorder); err != nil {
			fail("stopped while reading the CSI container's settings: %v", err)
		}
	}
	if err := podconfig.CheckFiles(os.Getenv, os.Stat, csiFiles, c.csiContainer); err != nil {
		fail("%v", err)
	}
	defaultPolicy, err := c.validate()
	if err != nil {
		fail("%v", err)
	}

	var driver sidecar.Driver
	driverName := c.driverName
	if c.csiAddress != "" {
		h.starting("waiting for the CSI driver at " + c.csiAddress)
		client, info := connectDriver(ctx, c)
		defer func() { _ = client.Close() }()
		driver = csiDriver{client: client}
		if driverName == "" {
			driverName = info.Name
		} else if driverName != info.Name {
			klog.InfoS("--driver-name differs from the driver's own name; using the flag", "flag", driverName, "driver", info.Name)
		}
	}

	lc, bulk, err := sidecar.NewLinstorClient(lapi.Log(linstorLogger{}))
	if err != nil {
		fail("LINSTOR client from LS_* environment: %v", err)
	}
	// A LINSTOR view whose decision-relevant content did not change is
	// reported unchanged (no decision anew) for at most one resync period,
	// like the informers' caches.
	linstor := sidecar.NewBulkLinstor(lc, bulk, c.propertyNamespace, c.resyncRate)

	// The PV and StorageClass caches are kept by watches of the sidecar's
	// own (sidecar.Watch), which resume within 2 s after an API server
	// restart. PVs are decoded compact straight from the API server's JSON
	// (sidecar.PVListerWatcher): most of the sidecar's memory at scale.
	// StorageClasses are kept whole but for managedFields, which nothing
	// here reads.
	wake := make(chan struct{}, 1)
	var rec *sidecar.Reconciler
	noteChange := func() {
		if rec != nil {
			rec.NoteInputChange()
		}
	}
	// The compact PV cache (sidecar.NewPVListerWatcher) is not wired: the
	// fault suite's conflicting-edit case left a PV unrepaired with it, not
	// yet explained; the typed watch stays until it is.
	pvWatch := sidecar.NewWatch("persistentvolumes", cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return kube.CoreV1().PersistentVolumes().List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return kube.CoreV1().PersistentVolumes().Watch(ctx, o)
		},
	}, kube), &corev1.PersistentVolume{}, stripManagedFields, wakeOnPV(driverName, wake, noteChange))
	scWatch := sidecar.NewWatch("storageclasses", cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return kube.StorageV1().StorageClasses().List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return kube.StorageV1().StorageClasses().Watch(ctx, o)
		},
	}, kube), &storagev1.StorageClass{}, stripManagedFields, wakeOnAny(wake, noteChange))

	// Pods the scheduler cannot place because of a PV's node affinity: the
	// API server sends only unscheduled Pending pods; the cache keeps their
	// keys, and the blocked set the claims of the blocked ones.
	demand := make(chan struct{}, 1)
	var blocked *sidecar.Blocked
	var podWatch *sidecar.Watch
	if c.repairBlockedPods {
		blocked = sidecar.NewBlocked()
		podWatch = sidecar.NewWatch("pending pods", &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.FieldSelector = sidecar.PendingPodSelector
				return kube.CoreV1().Pods("").List(ctx, o)
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.FieldSelector = sidecar.PendingPodSelector
				return kube.CoreV1().Pods("").Watch(ctx, o)
			},
		}, &corev1.Pod{}, blocked.Transform, func(obj any) {
			if blocked.Changed(podWatch.Indexer(), obj) {
				select {
				case demand <- struct{}{}:
				default:
				}
			}
		})
	}

	// Never two rewriters: while the upstream affinity controller runs
	// (deployed by the operator, its chart or by hand), no new repair starts.
	selfNS, selfName, inPod := podconfig.Self()
	others, err := rivals.New(kube, rivals.Options{Self: types.NamespacedName{Namespace: selfNS, Name: selfName}})
	if err != nil {
		fail("other affinity controllers: %v", err)
	}
	others.Start(ctx)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-others.Changed():
				noteChange()
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		}
	}()
	var self runtime.Object
	if inPod {
		self = podRef(selfNS, selfName)
	}

	method, _ := sidecar.ParseRepairMethod(c.repairMethod) // validated above
	exec := &sidecar.Executor{Kube: kube, State: linstor, DriverName: driverName, Timeout: c.timeout, Method: method}
	rec = sidecar.NewReconciler(sidecar.Options{
		Config:  sidecar.Config{DriverName: driverName, GracePeriod: c.gracePeriod, DefaultPolicy: defaultPolicy},
		Workers: c.workers, Timeout: c.timeout,
		Brakes: &sidecar.Brakes{
			MaxDriftFraction: c.maxDriftFraction, MinDrifted: 5, DriftConfirmations: c.driftConfirms,
			Force: c.force, MaxRepairsPerMinute: c.maxRepairsPerMin,
		},
		SkipUnchanged:   true,
		OtherController: others,
		Self:            self,
		Blocked:         blocked,
		Volumes:         linstor,
		Replicas:        linstor,
	}, corelisters.NewPersistentVolumeLister(pvWatch.Indexer()), storagelisters.NewStorageClassLister(scWatch.Indexer()),
		linstor, driver, exec, recorder, metrics)

	go pvWatch.Run(ctx)
	go scWatch.Run(ctx)
	synced := func() bool { return pvWatch.HasSynced() && scWatch.HasSynced() }
	h.started(readiness(driver, synced))
	waitFor := []cache.InformerSynced{pvWatch.HasSynced, scWatch.HasSynced, others.HasSynced}
	if podWatch != nil {
		go podWatch.Run(ctx)
		waitFor = append(waitFor, podWatch.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), waitFor...) {
		fail("informer caches did not sync")
	}
	klog.InfoS("Caches synced", "driver", driverName, "reconcileRate", c.reconcileRate, "workers", c.workers)

	run := func(ctx context.Context) {
		metrics.Leader.Set(1)
		klog.InfoS("Acting as leader", "driver", driverName)
		rec.Run(ctx, c.reconcileRate, wake, demand)
	}
	if !c.leaderElection {
		run(ctx)
		return
	}
	runLeaderElection(ctx, kube, c, component+"-"+driverName, identity(), mux, run)
}

func kubeConfig(c config) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if c.kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = float32(c.kubeAPIQPS), c.kubeAPIBurst
	cfg.UserAgent = component + "/" + version
	return cfg, nil
}

// connectDriver connects to the CSI socket and learns the driver's name,
// waiting (and saying so once) while the driver is not up yet.
func connectDriver(ctx context.Context, c config) (*csiprobe.Client, csiprobe.Info) {
	explainSocketDenied(c.csiAddress)
	client, err := csiprobe.Connect(ctx, c.csiAddress, csiprobe.Options{Timeout: c.timeout})
	if err != nil {
		fail("connect to CSI driver at %s: %v", c.csiAddress, err)
	}
	logged := ""
	for {
		d, err := client.Discover(ctx)
		if d.Name != "" {
			if err != nil {
				klog.InfoS("CSI driver found but not fit to work with yet; will wait before acting", "driver", d.Name, "reason", err.Error())
			} else {
				klog.InfoS("CSI driver found", "driver", d.Name, "version", d.Version, "getVolume", d.Controller.GetVolume, "getCapacity", d.Controller.GetCapacity)
			}
			return client, d.Info
		}
		if err != nil && err.Error() != logged {
			logged = err.Error()
			klog.InfoS("Waiting for the CSI driver", "address", c.csiAddress, "reason", logged)
		}
		select {
		case <-ctx.Done():
			fail("stopped while waiting for the CSI driver")
		case <-time.After(time.Second):
		}
	}
}

// stripManagedFields drops metadata.managedFields from cached objects.
func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// defaultGCPercent trades a little CPU in the cycles that decode LINSTOR's
// answers for a smaller heap: the informer cache is most of what is live, and
// with Go's default of 100 the heap may grow to twice that before a
// collection. The GOGC environment variable still wins.
const defaultGCPercent = 50

func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
}

// wakeOnPV wakes the loop when a PV of the driver appears or changes, and
// tells it (changed) that its last decision no longer stands.
func wakeOnPV(driverName string, wake chan<- struct{}, changed func()) func(obj any) {
	return wakeOn(func(obj any) bool {
		pv, ok := obj.(*corev1.PersistentVolume)
		return ok && pv.Spec.CSI != nil && pv.Spec.CSI.Driver == driverName
	}, wake, changed)
}

// wakeOnAny is wakeOnPV for StorageClasses: any change may change a policy.
func wakeOnAny(wake chan<- struct{}, changed func()) func(obj any) {
	return wakeOn(func(any) bool { return true }, wake, changed)
}

// wakeOn calls changed and pokes wake (without blocking: wake-ups coalesce)
// for every added, updated or deleted object that concerns says is ours,
// and after every relist (obj nil).
func wakeOn(concerns func(obj any) bool, wake chan<- struct{}, changed func()) func(obj any) {
	return func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if obj != nil && !concerns(obj) {
			return
		}
		changed()
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

func serveHTTP(ctx context.Context, addr string, mux *http.ServeMux) {
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	klog.InfoS("Serving health and metrics", "address", addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fail("http endpoint %s: %v", addr, err)
	}
}

// identity names this instance in the leader Lease: the pod name, made unique
// so two processes on one host never share it.
func identity() string {
	host := os.Getenv("POD_NAME")
	if host == "" {
		host, _ = os.Hostname()
	}
	return host + "_" + rand.String(6)
}

// linstorLogger sends golinstor's debug output to klog at -v=6.
type linstorLogger struct{}

func (linstorLogger) Debugf(format string, args ...any) { klog.V(6).Infof(format, args...) }
func (linstorLogger) Infof(format string, args ...any)  { klog.V(4).Infof(format, args...) }
func (linstorLogger) Warnf(format string, args ...any)  { klog.Warningf(format, args...) }
func (linstorLogger) Errorf(format string, args ...any) { klog.Errorf(format, args...) }

// Command linstor-affinity-sidecar runs next to the LINSTOR CSI controller and
// keeps every LINSTOR-backed PV's node affinity in sync with where LINSTOR keeps
// the volume's data. main only wires; the decisions live in the packages under
// sidecar/ (the decision in decide, the loop in controller).
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
	csimetrics "github.com/kubernetes-csi/csi-lib-utils/metrics"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/controller"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/linstor"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/podconfig"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/repair"
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
	metrics := controller.NewMetrics()
	controller.RegisterKubeClientMetrics(metrics.Registry)
	// csi_sidecar_operations_seconds, as every kubernetes-csi sidecar has
	// it, on the same /metrics; the process collector already exports the
	// start time.
	csiMetrics := csimetrics.NewCSIMetricsManagerWithOptions("", csimetrics.WithProcessStartTime(false))
	// Health from the start: a liveness probe asks whether the process is
	// alive, and it is while it waits for the driver or the API server.
	// /readyz says why not yet until the driver answered and the caches
	// synced.
	h := newHealth()
	mux := http.NewServeMux()
	h.register(mux, c, prometheus.Gatherers{metrics.Registry, csiMetrics.GetRegistry()})
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

	linstorConn, err := linstorSettings(ctx, kube, &c, setFlags(fs), c.csiAddress != "", h, recorder)
	if err != nil {
		fail("%v", err)
	}
	defaultPolicy, err := c.validate()
	if err != nil {
		fail("%v", err)
	}

	var driver controller.Driver
	driverName := c.driverName
	if c.csiAddress != "" {
		h.starting("waiting for the CSI driver at " + c.csiAddress)
		client, info := connectDriver(ctx, c, csiMetrics)
		defer func() { _ = client.Close() }()
		driver = csiDriver{client: client}
		if driverName == "" {
			driverName = info.Name
		} else if driverName != info.Name {
			klog.InfoS("--driver-name differs from the driver's own name; using the flag", "flag", driverName, "driver", info.Name)
		}
	}

	lc, bulk, err := linstor.NewLinstorClient(linstorConn, lapi.Log(linstorLogger{}))
	if err != nil {
		fail("%v", err)
	}
	// A LINSTOR view whose decision-relevant content did not change is
	// reported unchanged (no decision anew) for at most one resync period,
	// like the informers' caches.
	linstor := linstor.NewBulkLinstor(lc, bulk, c.propertyNamespace, c.resyncRate)

	// Never two rewriters: while the upstream affinity controller runs
	// (deployed by the operator, its chart or by hand), no new repair starts.
	selfNS, selfName, inPod := podconfig.Self()
	others, err := rivals.New(kube, rivals.Options{Self: types.NamespacedName{Namespace: selfNS, Name: selfName}})
	if err != nil {
		fail("other affinity controllers: %v", err)
	}
	others.Start(ctx)
	var self runtime.Object
	if inPod {
		self = podRef(selfNS, selfName)
	}

	method, _ := repair.ParseRepairMethod(c.repairMethod) // validated above
	exec := &repair.Executor{Kube: kube, State: linstor, DriverName: driverName, Timeout: c.timeout, Method: method}
	src := controller.KubeSources(kube, c.repairBlockedPods)
	src.Others = others
	ctrl := controller.NewController(src, controller.Options{
		Config:  decide.Config{DriverName: driverName, GracePeriod: c.gracePeriod, DefaultPolicy: defaultPolicy},
		Workers: c.workers, Timeout: c.timeout,
		Brakes: &controller.Brakes{
			MaxDriftFraction: c.maxDriftFraction, MinDrifted: controller.DefaultMinDrifted, DriftConfirmations: c.driftConfirms,
			Force: c.force, MaxRepairsPerMinute: c.maxRepairsPerMin,
		},
		SkipUnchanged: true,
		Self:          self,
		Volumes:       linstor,
		Replicas:      linstor,
	}, linstor, driver, exec, recorder, metrics)

	ctrl.Start(ctx)
	h.started(readiness(driver, ctrl.Synced))
	if !ctrl.WaitForCacheSync(ctx) {
		fail("informer caches did not sync")
	}
	klog.InfoS("Caches synced", "driver", driverName, "reconcileRate", c.reconcileRate, "workers", c.workers)

	run := func(ctx context.Context) {
		metrics.Leader.Set(1)
		klog.InfoS("Acting as leader", "driver", driverName)
		ctrl.Run(ctx, c.reconcileRate)
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

// connectDriver connects to the CSI socket, with every call recorded in
// csiMetrics, and learns the driver's name, waiting (and saying so once per
// reason) while the driver is not up yet.
func connectDriver(ctx context.Context, c config, csiMetrics csimetrics.CSIMetricsManager) (*csiprobe.Client, csiprobe.Info) {
	explainSocketDenied(c.csiAddress)
	client, err := csiprobe.Connect(ctx, c.csiAddress, csiprobe.Options{Timeout: c.timeout, MetricsManager: csiMetrics})
	if err != nil {
		fail("connect to CSI driver at %s: %v", c.csiAddress, err)
	}
	d, err := client.WaitDriver(ctx, csiprobe.DefaultProbeInterval)
	switch {
	case d.Name == "":
		fail("stopped while waiting for the CSI driver: %v", err)
	case err != nil:
		klog.InfoS("CSI driver found but not fit to work with yet; will wait before acting", "driver", d.Name, "reason", err.Error())
	default:
		klog.InfoS("CSI driver found", "driver", d.Name, "version", d.Version, "getVolume", d.Controller.GetVolume, "getCapacity", d.Controller.GetCapacity)
	}
	csiMetrics.SetDriverName(d.Name)
	return client, d.Info
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

package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/podconfig"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/repair"
	"k8s.io/klog/v2"
)

// config is every setting of the program, named as the kubernetes-csi sidecars
// name theirs where one exists.
type config struct {
	csiAddress   string
	csiContainer string
	driverName   string
	kubeconfig   string
	timeout      time.Duration
	httpEndpoint string
	metricsPath  string

	leaderElection          bool
	leaderElectionNamespace string
	leaseDuration           time.Duration
	renewDeadline           time.Duration
	retryPeriod             time.Duration

	reconcileRate     time.Duration
	repairBlockedPods bool
	resyncRate        time.Duration
	workers           int
	propertyNamespace string
	gracePeriod       time.Duration
	defaultPolicy     string
	repairMethod      string
	maxDriftFraction  float64
	driftConfirms     int
	force             bool
	maxRepairsPerMin  int
	kubeAPIQPS        float64
	kubeAPIBurst      int
	enablePprof       bool
	showVersion       bool
}

// version and commit are stamped at build time with -ldflags
// "-X main.version=... -X main.commit=..."; the version comes from the file
// VERSION (make build, the Dockerfile), the one place that names it.
var (
	version = "dev"
	commit  = ""
)

// versionLine is what --version prints.
func versionLine(name string) string {
	s := name + " " + version
	if commit != "" {
		s += " (commit " + commit + ")"
	}
	return s + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}

func newFlagSet(name string, c *config) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// Of klog's flags only the verbosity ones, as the CSI sidecars show them.
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	for _, f := range []string{"v", "vmodule"} {
		fs.Var(klogFlags.Lookup(f).Value, f, klogFlags.Lookup(f).Usage)
	}
	fs.StringVar(&c.csiAddress, "csi-address", "/csi/csi.sock", "Address of the CSI driver socket shared with the LINSTOR CSI controller. Empty: standalone mode (needs --driver-name).")
	fs.StringVar(&c.csiContainer, "csi-container", "linstor-csi", "Container of the sidecar's own pod whose LINSTOR settings (LS_* environment, --property-namespace, --default-remote-access-policy) are reused when not given explicitly. Empty: never.")
	fs.StringVar(&c.driverName, "driver-name", "", "CSI driver name whose PVs to manage. Default: asked from the driver (GetPluginInfo); required in standalone mode.")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "Path to a kubeconfig. Empty: in-cluster configuration.")
	fs.DurationVar(&c.timeout, "timeout", time.Minute, "Timeout of every single Kubernetes, LINSTOR and CSI call.")
	fs.StringVar(&c.httpEndpoint, "http-endpoint", ":9813", "Address of the HTTP server for /healthz, /readyz and metrics. Empty: disabled.")
	fs.StringVar(&c.metricsPath, "metrics-path", "/metrics", "HTTP path of the Prometheus metrics.")
	fs.BoolVar(&c.leaderElection, "leader-election", true, "Elect a leader on a Lease, so only one replica acts.")
	fs.StringVar(&c.leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease. Empty: the pod's namespace.")
	fs.DurationVar(&c.leaseDuration, "leader-election-lease-duration", 15*time.Second, "Duration non-leaders wait before trying to take the lease.")
	fs.DurationVar(&c.renewDeadline, "leader-election-renew-deadline", 10*time.Second, "Duration the leader retries renewing before giving up.")
	fs.DurationVar(&c.retryPeriod, "leader-election-retry-period", 5*time.Second, "Duration between leader election attempts.")
	fs.DurationVar(&c.reconcileRate, "reconcile-rate", 2*time.Minute, "How often LINSTOR is read in full and every PV checked. Pods blocked by a PV's node affinity are served at once, with reads of their volumes only (--repair-blocked-pods); PV changes are decided on the last full read.")
	fs.BoolVar(&c.repairBlockedPods, "repair-blocked-pods", true, "Watch unscheduled Pending pods; for those the scheduler cannot place because of a PV's node affinity, read LINSTOR for their volumes and repair them at once.")
	fs.DurationVar(&c.resyncRate, "resync-rate", 5*time.Minute, "How often the informers resync their caches.")
	fs.IntVar(&c.workers, "workers", 10, "Repairs carried out at the same time.")
	fs.StringVar(&c.propertyNamespace, "property-namespace", "", "LINSTOR property namespace holding node topology. Empty: Aux/topology if any node has Aux/topology/kubernetes.io/hostname, else Aux.")
	fs.DurationVar(&c.gracePeriod, "new-pv-grace-period", time.Minute, "Leave PVs younger than this alone (0 disables).")
	fs.StringVar(&c.defaultPolicy, "default-remote-access-policy", "true", "LINSTOR CSI's --default-remote-access-policy: the policy of StorageClasses that set none and use DRBD or NVMe.")
	fs.StringVar(&c.repairMethod, "repair-method", "auto", "How drifted PVs are rewritten: in-place (update spec.nodeAffinity; needs Kubernetes 1.35+ with MutablePVNodeAffinity), recreate (crash-safe delete and create), or auto (in-place where the API server accepts it, checked by a dry run).")
	fs.Float64Var(&c.maxDriftFraction, "max-drift-fraction", 0.5, "Drift brake: a cycle in which more than this fraction of the driver's PVs (and more than 5) would be rewritten repairs nothing until the same drift is confirmed. 0 disables.")
	fs.IntVar(&c.driftConfirms, "drift-confirmations", 3, "Drift brake: consecutive cycles that must see the same drift before it is repaired.")
	fs.BoolVar(&c.force, "force", false, "Release the drift brake: repair whatever drift LINSTOR reports, however large.")
	fs.IntVar(&c.maxRepairsPerMin, "max-repairs-per-minute", 1200, "At most this many PV rewrites in any sliding minute; the rest wait. The default lets a rotation of 1,200 PVs be repaired at once and bounds a runaway to 20 rewrites a second. 0: no limit.")
	fs.Float64Var(&c.kubeAPIQPS, "kube-api-qps", 300, "Queries per second to the Kubernetes API server. Only bursts of repairs come near it (a repair is 1 to 7 requests); --max-repairs-per-minute is the brake meant to protect the API server.")
	fs.IntVar(&c.kubeAPIBurst, "kube-api-burst", 600, "Burst of queries to the Kubernetes API server.")
	fs.BoolVar(&c.enablePprof, "enable-pprof", false, "Serve Go's profiler at /debug/pprof/ on --http-endpoint.")
	fs.BoolVar(&c.showVersion, "version", false, "Print the version and exit.")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n       %s check [-o table|json] [flags]\n       %s migrate-properties [flags]\n\n", name, name, name)
		fmt.Fprintf(fs.Output(), "Keeps the node affinity of LINSTOR CSI PersistentVolumes in sync with where LINSTOR keeps their data.\n")
		fmt.Fprintf(fs.Output(), "LINSTOR is reached with golinstor's LS_* environment (%s),\nor else with the settings of the LINSTOR CSI container (--csi-container).\n\nFlags:\n", strings.Join(podconfig.LinstorEnv(), ", "))
		fs.PrintDefaults()
	}
	return fs
}

// validate checks settings that flag parsing cannot.
func (c *config) validate() (decide.Policy, error) {
	if c.csiAddress == "" && c.driverName == "" {
		return nil, fmt.Errorf("standalone mode (--csi-address=\"\") needs --driver-name")
	}
	for name, d := range map[string]time.Duration{"--timeout": c.timeout, "--reconcile-rate": c.reconcileRate, "--resync-rate": c.resyncRate} {
		if d <= 0 {
			return nil, fmt.Errorf("%s must be positive, got %s", name, d)
		}
	}
	if c.gracePeriod < 0 {
		return nil, fmt.Errorf("--new-pv-grace-period must not be negative, got %s", c.gracePeriod)
	}
	if c.maxDriftFraction < 0 || c.maxDriftFraction > 1 {
		return nil, fmt.Errorf("--max-drift-fraction must be within [0, 1], got %v", c.maxDriftFraction)
	}
	if c.driftConfirms < 1 {
		return nil, fmt.Errorf("--drift-confirmations must be at least 1, got %d", c.driftConfirms)
	}
	if c.maxRepairsPerMin < 0 {
		return nil, fmt.Errorf("--max-repairs-per-minute must not be negative, got %d", c.maxRepairsPerMin)
	}
	if c.workers < 1 {
		return nil, fmt.Errorf("--workers must be at least 1, got %d", c.workers)
	}
	if _, err := repair.ParseRepairMethod(c.repairMethod); err != nil {
		return nil, fmt.Errorf("--repair-method: %w", err)
	}
	p, err := decide.ParsePolicy(c.defaultPolicy)
	if err != nil {
		return nil, fmt.Errorf("--default-remote-access-policy: %w", err)
	}
	return p, nil
}

func fail(format string, args ...any) {
	klog.ErrorS(fmt.Errorf(format, args...), "Cannot start")
	klog.FlushAndExit(klog.ExitFlushTimeout, 1)
}

func exitOnHelp(err error) {
	if err == flag.ErrHelp {
		os.Exit(0)
	}
	if err != nil {
		os.Exit(2)
	}
}

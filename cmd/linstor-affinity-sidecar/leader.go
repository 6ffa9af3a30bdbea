package main

import (
	"context"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

// leaderHealthPath is where the leader election watchdog answers, as with
// csi-lib-utils' leaderelection (the kubernetes-csi sidecars).
const leaderHealthPath = "/healthz/leader-election"

// runLeaderElection runs run while this process holds the Lease lockName,
// with the Lease, identity and health check csi-lib-utils' leaderelection
// would use, and one difference that the real pod showed: when ctx ends
// (SIGTERM, kubectl delete pod) the Lease is released and the process
// exits 0. csi-lib-utils exits 1 on any end of leadership, so every
// deletion of the CSI controller pod ended the sidecar with an error.
// Losing the Lease while running still exits 1, so kubelet restarts it.
func runLeaderElection(ctx context.Context, kube kubernetes.Interface, c config, lockName, id string, mux *http.ServeMux, run func(context.Context)) {
	namespace := c.leaderElectionNamespace
	if namespace == "" {
		namespace = inClusterNamespace()
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events(namespace)})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: lockName + "/" + id})
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, namespace, sanitizeName(lockName),
		kube.CoreV1(), kube.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: sanitizeName(id), EventRecorder: recorder})
	if err != nil {
		fail("leader election: %v", err)
	}
	watchdog := leaderelection.NewLeaderHealthzAdaptor(leaderHealthTimeout)
	mux.HandleFunc(leaderHealthPath, func(w http.ResponseWriter, r *http.Request) {
		if err := watchdog.Check(r); err != nil {
			http.Error(w, "internal server error: "+err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	// The election runs on a context of its own that ends only once run has
	// returned: repairs under way when the sidecar is told to stop get their
	// grace period (sidecar.Options.ShutdownGrace) while this process still
	// holds the Lease, so no successor acts on the same PVs meanwhile.
	electionCtx, stopElection := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElection()
	var (
		mu       sync.Mutex
		started  bool
		finished = make(chan struct{})
	)
	go func() {
		<-ctx.Done()
		mu.Lock()
		leading := started
		mu.Unlock()
		if leading {
			<-finished
		}
		stopElection()
	}()
	lead := func(leaseCtx context.Context) {
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			return
		}
		started = true
		mu.Unlock()
		defer close(finished)
		// Run stops on SIGTERM (ctx) or when the Lease is lost (leaseCtx).
		runCtx, cancel := context.WithCancel(leaseCtx)
		defer cancel()
		defer context.AfterFunc(ctx, cancel)()
		run(runCtx)
	}
	leaderelection.RunOrDie(electionCtx, leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   c.leaseDuration,
		RenewDeadline:   c.renewDeadline,
		RetryPeriod:     c.retryPeriod,
		ReleaseOnCancel: true,
		Name:            lockName,
		WatchDog:        watchdog,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: lead,
			OnStoppedLeading: func() {
				if ctx.Err() != nil {
					klog.InfoS("Stopped leading: shutting down, lease released", "lease", namespace+"/"+sanitizeName(lockName))
					return
				}
				klog.ErrorS(nil, "Lost the leader lease", "lease", namespace+"/"+sanitizeName(lockName))
				klog.FlushAndExit(klog.ExitFlushTimeout, 1)
			},
			OnNewLeader: func(identity string) {
				klog.V(3).InfoS("New leader detected", "leader", identity)
			},
		},
	})
}

// leaderHealthTimeout is how long past a missed renewal the watchdog still
// answers ok (csi-lib-utils' DefaultHealthCheckTimeout).
const leaderHealthTimeout = 20 * time.Second

var invalidLeaseChars = regexp.MustCompile("[^a-zA-Z0-9-]")

// sanitizeName makes a Lease name or identity out of name as csi-lib-utils
// does, so the Lease keeps its name across versions of the sidecar.
func sanitizeName(name string) string {
	name = invalidLeaseChars.ReplaceAllString(name, "-")
	if strings.HasSuffix(name, "-") {
		name += "X"
	}
	return name
}

// inClusterNamespace is the pod's namespace: POD_NAMESPACE, else the
// service account's, else "default".
func inClusterNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if data, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		if ns := strings.TrimSpace(string(data)); ns != "" {
			return ns
		}
	}
	return "default"
}

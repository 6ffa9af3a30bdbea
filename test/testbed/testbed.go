package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
)

const (
	// DriverName is what LINSTOR CSI answers to GetPluginInfo.
	DriverName = "linstor.csi.linbit.com"
	// PropertyNamespace is where Piraeus Operator v2 keeps node topology in
	// LINSTOR and what it passes to LINSTOR CSI (--property-namespace).
	PropertyNamespace = "Aux/topology"
	// ControllerNamespace holds the CSI controller's service account and the
	// sidecar's leader Lease, as the operator's namespace does.
	ControllerNamespace = "piraeus-datastore"
	// ControllerServiceAccount is the CSI controller pod's service account.
	ControllerServiceAccount = "linstor-csi-controller"
	// SidecarBinaryName is the sidecar's file name in bin/.
	SidecarBinaryName = "linstor-affinity-sidecar"
	// DefaultReconcileRate keeps tests quick while leaving several cycles
	// between the steps of a scenario.
	DefaultReconcileRate = 2 * time.Second
)

// Options shape a test bed. The zero value gives four nodes in two zones,
// the sidecar from <repo>/bin running without leader election, reconciling
// every DefaultReconcileRate.
type Options struct {
	// Nodes are registered in LINSTOR and Kubernetes; default DefaultNodes().
	Nodes []Node
	// MutablePVNodeAffinity turns on the alpha gate in the control plane.
	MutablePVNodeAffinity bool
	// APIServerArgs are extra kube-apiserver flags (an audit log, say).
	APIServerArgs []string
	// SidecarBinary is the sidecar executable; empty means <repo>/bin.
	SidecarBinary string
	// NoSidecar leaves the sidecar to a later StartSidecar call.
	NoSidecar bool
	// LeaderElection runs the sidecar with a leader Lease in
	// ControllerNamespace (lease duration 15 s, as deployed).
	LeaderElection bool
	// ReconcileRate is --reconcile-rate; zero means DefaultReconcileRate.
	ReconcileRate time.Duration
	// SidecarArgs are appended to the sidecar's flags (later flags win).
	SidecarArgs []string
	// SidecarEnv, when not nil, replaces the LINSTOR connection the sidecar
	// is given in its environment (LS_CONTROLLERS=<simulator>), e.g. with
	// only POD_NAMESPACE for a zero-configuration start (CreateControllerPod).
	SidecarEnv []string
	// LinstorTLS serves the simulator over HTTPS requiring client
	// certificates; LINSTOR CSI gets its CA and client certificate as PEM in
	// LS_ROOT_CA, LS_USER_CERTIFICATE and LS_USER_KEY, as Piraeus passes them
	// from the Secret linstor-csi-controller-tls.
	LinstorTLS bool
	// CSIInPod starts neither LINSTOR CSI nor the external-provisioner (nor
	// the sidecar) as host processes: a test runs them in the CSI
	// controller pod on a real node (package node, CSIControllerDeployment).
	CSIInPod bool
	// ControllerManagerArgs are appended to kube-controller-manager's flags.
	ControllerManagerArgs []string
	// APIProxy puts an APIProxy between the sidecar and the API server
	// (Bed.APIProxy), to hold watch events back or fail PV creates.
	APIProxy bool
	// LogDir keeps every log after Stop; empty means inside the temp dir.
	LogDir string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Bed is a running test bed. Stop ends everything it started.
type Bed struct {
	Cluster     *cluster.Cluster
	Sim         *linstorsim.Sim
	Driver      *cluster.LinstorCSI
	Provisioner *cluster.Process
	// Sidecar is nil until the sidecar was started.
	Sidecar *cluster.Process
	// Kube is an admin client.
	Kube kubernetes.Interface
	// APIProxy is the sidecar's way to the API server with Options.APIProxy.
	APIProxy *APIProxy

	opts              Options
	nodes             map[string]Node
	httpAddr          string
	sidecarKubeconfig string
}

// Start builds the test bed: control plane, simulator, nodes, LINSTOR CSI,
// external-provisioner and (unless NoSidecar) the sidecar, and returns once
// the sidecar says it is ready. ctx bounds the start; on error everything
// started is stopped again.
func Start(ctx context.Context, opts Options) (*Bed, error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.ReconcileRate <= 0 {
		opts.ReconcileRate = DefaultReconcileRate
	}
	if len(opts.Nodes) == 0 {
		opts.Nodes = DefaultNodes()
	}
	if opts.SidecarBinary == "" {
		dir, err := cluster.DefaultBinDir()
		if err != nil {
			return nil, err
		}
		opts.SidecarBinary = filepath.Join(dir, SidecarBinaryName)
	}
	missing, err := cluster.MissingBinaries("", "csi-provisioner", "linstor-csi")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(opts.SidecarBinary); err != nil && !opts.CSIInPod {
		missing = append(missing, opts.SidecarBinary)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("test bed needs %v: %w", missing, cluster.ErrMissingBinary)
	}

	b := &Bed{opts: opts, nodes: map[string]Node{}}
	if err := b.start(ctx); err != nil {
		return nil, errors.Join(err, b.Stop())
	}
	return b, nil
}

func (b *Bed) start(ctx context.Context) error {
	began := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{
		MutablePVNodeAffinity: b.opts.MutablePVNodeAffinity, LogDir: b.opts.LogDir, ControllerManagerArgs: b.opts.ControllerManagerArgs,
		APIServerArgs: b.opts.APIServerArgs,
	})
	if err != nil {
		return err
	}
	b.Cluster, b.Kube = c, c.Client()
	b.opts.Logf("control plane ready after %v", time.Since(began).Round(time.Millisecond))

	b.Sim = linstorsim.New(linstorsim.Options{PropertyNamespace: PropertyNamespace, RequireClientCert: b.opts.LinstorTLS})
	if err := b.Sim.Start(); err != nil {
		return fmt.Errorf("LINSTOR simulator: %w", err)
	}
	for _, n := range b.opts.Nodes {
		if err := b.AddNode(ctx, n); err != nil {
			return err
		}
	}
	if b.sidecarKubeconfig, err = b.controllerCredentials(ctx); err != nil {
		return err
	}
	if b.opts.APIProxy {
		if err := b.startAPIProxy(); err != nil {
			return err
		}
	}

	if b.opts.CSIInPod {
		return nil
	}
	driverEnv, err := b.linstorClientEnv()
	if err != nil {
		return err
	}
	b.Driver, err = c.StartLinstorCSI(ctx, cluster.LinstorCSIOptions{
		LinstorEndpoint:   b.Sim.URL(),
		PropertyNamespace: PropertyNamespace,
		LogLevel:          "info",
		Env:               driverEnv,
	})
	if err != nil {
		return err
	}
	b.Provisioner, err = c.StartProcess(ctx, cluster.ProcessSpec{
		Name: "csi-provisioner",
		Path: "csi-provisioner",
		// As the Piraeus Operator runs it next to LINSTOR CSI.
		Args: []string{
			"--csi-address=" + b.Driver.SocketPath(),
			"--kubeconfig=" + c.Kubeconfig(),
			"--feature-gates=Topology=true",
			"--leader-election=false",
			"--default-fstype=ext4",
			"--extra-create-metadata",
			"--timeout=1m",
			"--retry-interval-start=500ms",
			"--retry-interval-max=5s",
			"--v=2",
		},
	})
	if err != nil {
		return fmt.Errorf("csi-provisioner: %w", err)
	}
	b.opts.Logf("LINSTOR CSI and external-provisioner started")
	if b.opts.NoSidecar {
		return nil
	}
	return b.StartSidecar(ctx)
}

// StartT starts a bed for t and stops it in t.Cleanup, printing the end of
// every log first when the test failed. A missing binary fails the test, or
// skips it with E2E_SKIP_MISSING=1.
func StartT(t testing.TB, opts Options) *Bed {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, err := Start(ctx, opts)
	if err != nil {
		cluster.SkipOrFatal(t, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			cluster.LogTails(t, b.Cluster.Processes())
		}
		if err := b.Stop(); err != nil {
			t.Errorf("stop test bed: %v", err)
		}
	})
	return b
}

// Stop ends every process and the simulator and removes the temp files.
// Safe to call more than once.
func (b *Bed) Stop() error {
	var errs []error
	if b.Cluster != nil {
		errs = append(errs, b.Cluster.Stop())
	}
	if b.Sim != nil {
		errs = append(errs, b.Sim.Close())
	}
	if b.APIProxy != nil {
		errs = append(errs, b.APIProxy.Close())
	}
	return errors.Join(errs...)
}

// StartSidecar runs the sidecar as the CSI controller pod would, on the
// driver's socket with the controller's service account, and waits until
// it reports ready (and, with leader election, leads).
func (b *Bed) StartSidecar(ctx context.Context) error {
	if b.Sidecar != nil {
		return errors.New("sidecar already started")
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	b.httpAddr = addr
	spec, err := b.sidecarSpec(SidecarBinaryName, ControllerPodName, addr)
	if err != nil {
		return err
	}
	p, err := b.Cluster.StartProcess(ctx, spec)
	if err != nil {
		return fmt.Errorf("sidecar: %w", err)
	}
	b.Sidecar = p
	if err := b.WaitSidecarReady(ctx); err != nil {
		return err
	}
	b.opts.Logf("sidecar ready (metrics on http://%s/metrics)", addr)
	return nil
}

// sidecarSpec is how the sidecar runs in the CSI controller pod podName:
// the driver's socket, the controller's service account, its HTTP endpoint
// on addr, its log named after name.
func (b *Bed) sidecarSpec(name, podName, addr string) (cluster.ProcessSpec, error) {
	args := []string{
		"--csi-address=" + b.Driver.Endpoint(),
		"--kubeconfig=" + b.sidecarKubeconfig,
		"--reconcile-rate=" + b.opts.ReconcileRate.String(),
		"--new-pv-grace-period=0",
		"--leader-election=" + strconv.FormatBool(b.opts.LeaderElection),
		"--leader-election-namespace=" + ControllerNamespace,
		"--http-endpoint=" + addr,
		"-v=2",
	}
	args = append(args, b.opts.SidecarArgs...)
	// The bed scrapes this address, whatever the test's flags say.
	args = append(args, "--http-endpoint="+addr)
	tlsEnv, err := b.linstorClientEnv()
	if err != nil {
		return cluster.ProcessSpec{}, err
	}
	env := append([]string{"LS_CONTROLLERS=" + b.Sim.URL()}, tlsEnv...)
	if b.opts.SidecarEnv != nil {
		env = b.opts.SidecarEnv
	}
	return cluster.ProcessSpec{
		Name: name,
		Path: b.opts.SidecarBinary,
		Args: args,
		// golinstor's environment, as the pod passes it; no in-cluster API
		// server to find, whatever the environment of the test runner.
		Env:       append([]string{"KUBERNETES_SERVICE_HOST=", "POD_NAME=" + podName}, env...),
		StopGrace: 10 * time.Second,
	}, nil
}

// RestartSidecar starts the sidecar again after Kill or Stop, with the same
// flags and log file, and waits until it is ready (and leads).
func (b *Bed) RestartSidecar(ctx context.Context) error {
	if b.Sidecar == nil {
		return errors.New("sidecar never started")
	}
	if err := b.Sidecar.Restart(ctx); err != nil {
		return fmt.Errorf("restart sidecar: %w", err)
	}
	return b.WaitSidecarReady(ctx)
}

// SidecarURL is the base URL of the sidecar's health and metrics endpoint.
func (b *Bed) SidecarURL() string { return "http://" + b.httpAddr }

// SidecarLogPath is the sidecar's log file (appended across restarts).
func (b *Bed) SidecarLogPath() string {
	if b.Sidecar == nil {
		return ""
	}
	return b.Sidecar.LogPath()
}

// freeLoopbackAddr finds a free port on 127.0.0.1. Another process may take
// it before the sidecar binds; the sidecar then exits and the start fails
// with its log, which is rare enough on a test machine.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("reserve a loopback port: %w", err)
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

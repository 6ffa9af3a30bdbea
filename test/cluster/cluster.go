package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Options shape a control plane. The zero value runs all four components
// from <repo>/bin with the cluster's default feature gates.
type Options struct {
	// BinDir holds etcd and the kube-* binaries; empty means <repo>/bin.
	BinDir string
	// MutablePVNodeAffinity turns on the alpha gate (KEP-5381) that lets a
	// PV's spec.nodeAffinity change in place.
	MutablePVNodeAffinity bool
	// NoControllerManager skips kube-controller-manager (no PV binder, no
	// service account controller; Start creates the default service account).
	NoControllerManager bool
	// NoScheduler skips kube-scheduler.
	NoScheduler bool
	// LogDir keeps component logs after Stop; empty means inside the temp dir.
	LogDir string
	// Verbose is the components' -v level (etcd logs at info when > 0).
	Verbose int
	// Extra flags appended per component, for tests that need them.
	APIServerArgs         []string
	ControllerManagerArgs []string
	SchedulerArgs         []string
}

// Cluster is a running control plane on 127.0.0.1. Stop it (or let StartT's
// cleanup do it) to end every process and remove its files.
type Cluster struct {
	opts   Options
	binDir string
	dir    string
	logDir string

	adminToken, kcmToken, schedulerToken string
	tokenFile, saPrivateKey, saPublicKey string

	etcdURL    string
	certFile   string
	restConfig *rest.Config
	client     kubernetes.Interface
	kubeconfig string

	mu       sync.Mutex
	procs    []*Process
	stopOnce sync.Once
	stopErr  error
}

// Start brings up etcd, kube-apiserver and (unless disabled) the controller
// manager and scheduler in a fresh temp dir, writes an admin kubeconfig, and
// returns once the API server is ready and the default namespace has its
// default service account. ctx bounds the start only; on error everything
// started is stopped again.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	began := time.Now()
	c, err := newCluster(opts)
	if err != nil {
		return nil, err
	}
	if err := c.start(ctx); err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	if opts.Verbose > 0 {
		fmt.Fprintf(os.Stderr, "cluster: control plane ready in %v (%s)\n", time.Since(began).Round(time.Millisecond), c.dir)
	}
	return c, nil
}

func newCluster(opts Options) (*Cluster, error) {
	binDir := opts.BinDir
	if binDir == "" {
		d, err := DefaultBinDir()
		if err != nil {
			return nil, err
		}
		binDir = d
	}
	var missing []error
	for _, name := range opts.binaries() {
		if _, err := resolveBinary(binDir, name); err != nil {
			missing = append(missing, err)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("cluster: %w", errors.Join(missing...))
	}
	dir, err := os.MkdirTemp("", "e2e-cluster-")
	if err != nil {
		return nil, fmt.Errorf("cluster temp dir: %w", err)
	}
	logDir := opts.LogDir
	if logDir == "" {
		logDir = filepath.Join(dir, "logs")
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("cluster log dir: %w", err)
	}
	return &Cluster{opts: opts, binDir: binDir, dir: dir, logDir: logDir}, nil
}

// binaries lists what these options need from BinDir.
func (o Options) binaries() []string {
	names := []string{"etcd", "kube-apiserver"}
	if !o.NoControllerManager {
		names = append(names, "kube-controller-manager")
	}
	if !o.NoScheduler {
		names = append(names, "kube-scheduler")
	}
	return names
}

func (c *Cluster) start(ctx context.Context) error {
	if err := c.writeCredentials(); err != nil {
		return err
	}
	if err := c.startEtcd(ctx); err != nil {
		return err
	}
	if err := c.startAPIServer(ctx); err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(c.restConfig)
	if err != nil {
		return fmt.Errorf("cluster client: %w", err)
	}
	c.client = client
	c.kubeconfig = filepath.Join(c.dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.kubeconfig, AdminUser, c.restConfig); err != nil {
		return err
	}
	if !c.opts.NoControllerManager {
		if err := c.startControllerManager(ctx); err != nil {
			return err
		}
	}
	if !c.opts.NoScheduler {
		if err := c.startScheduler(ctx); err != nil {
			return err
		}
	}
	return c.waitDefaultServiceAccount(ctx)
}

func (c *Cluster) writeCredentials() error {
	var err error
	tokens := []*string{&c.adminToken, &c.kcmToken, &c.schedulerToken}
	for _, t := range tokens {
		if *t, err = randomToken(); err != nil {
			return err
		}
	}
	c.tokenFile = filepath.Join(c.dir, "tokens.csv")
	if err := writeTokenFile(c.tokenFile, []tokenUser{
		{token: c.adminToken, user: AdminUser, groups: []string{"system:masters"}},
		{token: c.kcmToken, user: controllerManagerUser},
		{token: c.schedulerToken, user: schedulerUser},
	}); err != nil {
		return err
	}
	c.saPrivateKey = filepath.Join(c.dir, "sa.key")
	c.saPublicKey = filepath.Join(c.dir, "sa.pub")
	return writeServiceAccountKeys(c.saPrivateKey, c.saPublicKey)
}

// waitDefaultServiceAccount waits until pods can be created in "default":
// the namespace exists and (the ServiceAccount admission plugin insists) so
// does its "default" service account. Without a controller manager nobody
// else creates it, so Start does.
func (c *Cluster) waitDefaultServiceAccount(ctx context.Context) error {
	var last error
	for {
		_, err := c.client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		last = err
		if apierrors.IsNotFound(err) && c.opts.NoControllerManager {
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: metav1.NamespaceDefault}}
			_, err = c.client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Create(ctx, sa, metav1.CreateOptions{})
			if err == nil || apierrors.IsAlreadyExists(err) {
				return nil
			}
			last = err
		}
		if p := c.crashed(); p != nil {
			return fmt.Errorf("waiting for service account default/default: %s exited (%v); log %s ends with:\n%s",
				p.Name(), p.ExitErr(), p.LogPath(), p.LogTail(3000))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for service account default/default: %w (last error: %v)", ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}

// crashed returns a component that exited without being stopped, if any.
func (c *Cluster) crashed() *Process {
	for _, p := range c.Processes() {
		if p.Exited() && !p.Stopped() {
			return p
		}
	}
	return nil
}

// StartProcess starts a peer (the CSI driver, the sidecar, ...) owned by the
// cluster: its log defaults to <LogDir>/<name>.log, bare paths resolve in the
// cluster's BinDir, and Stop ends it with the control plane.
func (c *Cluster) StartProcess(ctx context.Context, spec ProcessSpec) (*Process, error) {
	if spec.Name == "" {
		spec.Name = filepath.Base(spec.Path)
	}
	if spec.LogPath == "" {
		spec.LogPath = filepath.Join(c.logDir, spec.Name+".log")
	}
	if spec.BinDir == "" {
		spec.BinDir = c.binDir
	}
	p, err := StartProcess(ctx, spec)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// RunProcess starts binary name (from BinDir, or a path) with args and extra
// env as a process owned by the cluster.
func (c *Cluster) RunProcess(ctx context.Context, name string, args, env []string) (*Process, error) {
	return c.StartProcess(ctx, ProcessSpec{Name: filepath.Base(name), Path: name, Args: args, Env: env})
}

// Processes returns every process the cluster started, oldest first.
func (c *Cluster) Processes() []*Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.procs)
}

// Process returns the newest process started under name (for example
// "kube-scheduler"), or nil.
func (c *Cluster) Process(name string) *Process {
	procs := c.Processes()
	for i := len(procs) - 1; i >= 0; i-- {
		if procs[i].Name() == name {
			return procs[i]
		}
	}
	return nil
}

// Kubeconfig returns the path of the admin kubeconfig (kubectl --kubeconfig).
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// RESTConfig returns a copy of the admin client config, free to modify.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.restConfig) }

// Client returns a clientset authenticated as the admin (system:masters).
func (c *Cluster) Client() kubernetes.Interface { return c.client }

// Dir returns the cluster's temp dir, removed by Stop; put sockets and
// scratch files of peers here.
func (c *Cluster) Dir() string { return c.dir }

// LogDir returns where component logs are written.
func (c *Cluster) LogDir() string { return c.logDir }

// BinDir returns where the cluster takes its binaries from.
func (c *Cluster) BinDir() string { return c.binDir }

// EtcdURL returns the client URL of the cluster's etcd.
func (c *Cluster) EtcdURL() string { return c.etcdURL }

// Stop kills every process the cluster started, newest first, and removes
// its temp dir (LogDir survives when it was given). Safe to call repeatedly.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		procs := c.Processes()
		var errs []error
		for i := len(procs) - 1; i >= 0; i-- {
			// Throwaway state: no need for a graceful shutdown.
			if err := procs[i].Kill(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, fmt.Errorf("cluster dir %s: %w", c.dir, err))
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"

	"k8s.io/client-go/rest"
)

// componentKubeconfig writes a kubeconfig for user (authenticated by token)
// next to the admin's and returns its path.
func (c *Cluster) componentKubeconfig(name, user, token string) (string, error) {
	cfg := rest.CopyConfig(c.restConfig)
	cfg.BearerToken = token
	path := filepath.Join(c.dir, name+".kubeconfig")
	if err := writeKubeconfig(path, user, cfg); err != nil {
		return "", err
	}
	return path, nil
}

// startControllerManager runs kube-controller-manager so the PV binder,
// service account and garbage collector controllers work. Each controller uses
// its own service account, as kubeadm clusters do. The node lifecycle
// controller is off: with no kubelet posting heartbeats it would taint every
// node unreachable and the scheduler would place nothing.
func (c *Cluster) startControllerManager(ctx context.Context) error {
	kubeconfig, err := c.componentKubeconfig("kube-controller-manager", controllerManagerUser, c.kcmToken)
	if err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--secure-port=0",
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + c.saPrivateKey,
		"--root-ca-file=" + c.certFile,
		"--controllers=*,-node-lifecycle-controller",
		// React within a second, not the default 15 s, when a claim
		// arrives before the PV it should bind to is in the cache.
		"--pvclaimbinder-sync-period=1s",
		"--v=" + strconv.Itoa(c.opts.Verbose),
	}
	args = append(args, c.featureGateArgs()...)
	args = append(args, c.opts.ControllerManagerArgs...)
	if _, err := c.StartProcess(ctx, ProcessSpec{Name: "kube-controller-manager", Path: "kube-controller-manager", Args: args}); err != nil {
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	return nil
}

// startScheduler runs kube-scheduler so pods get nodes by the real volume
// topology checks (VolumeBinding, VolumeZone) against PV node affinity.
func (c *Cluster) startScheduler(ctx context.Context) error {
	kubeconfig, err := c.componentKubeconfig("kube-scheduler", schedulerUser, c.schedulerToken)
	if err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--secure-port=0",
		"--leader-elect=false",
		"--v=" + strconv.Itoa(c.opts.Verbose),
	}
	args = append(args, c.featureGateArgs()...)
	args = append(args, c.opts.SchedulerArgs...)
	if _, err := c.StartProcess(ctx, ProcessSpec{Name: "kube-scheduler", Path: "kube-scheduler", Args: args}); err != nil {
		return fmt.Errorf("kube-scheduler: %w", err)
	}
	return nil
}

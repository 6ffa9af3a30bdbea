package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// serviceAccountIssuer is the issuer the API server stamps into tokens.
const serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

// startAPIServer runs kube-apiserver against the cluster's etcd with static
// token authentication, RBAC and generated service account keys, and waits
// until /readyz answers ok for the admin.
func (c *Cluster) startAPIServer(ctx context.Context) error {
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		ports, err := freePorts(1)
		if err != nil {
			return err
		}
		certDir := filepath.Join(c.dir, fmt.Sprintf("apiserver-certs-%d", attempt))
		args := []string{
			"--etcd-servers=" + c.etcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(ports[0]),
			"--cert-dir=" + certDir,
			"--token-auth-file=" + c.tokenFile,
			"--authorization-mode=RBAC",
			"--service-account-issuer=" + serviceAccountIssuer,
			"--service-account-key-file=" + c.saPublicKey,
			"--service-account-signing-key-file=" + c.saPrivateKey,
			"--service-cluster-ip-range=10.96.0.0/16",
			"--allow-privileged=true",
			"--profiling=false",
			"--v=" + strconv.Itoa(c.opts.Verbose),
		}
		args = append(args, c.featureGateArgs()...)
		args = append(args, c.opts.APIServerArgs...)
		p, err := c.StartProcess(ctx, ProcessSpec{Name: "kube-apiserver", Path: "kube-apiserver", Args: args})
		if err != nil {
			return err
		}
		host := fmt.Sprintf("https://127.0.0.1:%d", ports[0])
		err = waitFor(ctx, p, "kube-apiserver /readyz", func(ctx context.Context) error {
			cfg, err := c.adminConfig(host, certDir)
			if err != nil {
				return err
			}
			return apiReady(ctx, cfg)
		})
		if err == nil {
			c.restConfig, err = c.adminConfig(host, certDir)
			if err != nil {
				return err
			}
			c.certFile = filepath.Join(certDir, "apiserver.crt")
			return nil
		}
		lastErr = err
		_ = p.Kill() // a failed attempt leaves nothing behind
		if !portConflict(p) {
			break
		}
	}
	return fmt.Errorf("kube-apiserver: %w", lastErr)
}

// adminConfig builds the admin's client config; the API server's self-signed
// serving certificate (written to --cert-dir at start) is the CA to trust.
func (c *Cluster) adminConfig(host, certDir string) (*rest.Config, error) {
	ca, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	if err != nil {
		return nil, fmt.Errorf("serving certificate not written yet: %w", err)
	}
	if len(ca) == 0 {
		return nil, errors.New("serving certificate still empty")
	}
	return &rest.Config{
		Host:            host,
		BearerToken:     c.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca},
		// Tests and benchmarks create objects in bulk; the client-side
		// default of 5 QPS would measure the limiter, not the system.
		QPS:   1000,
		Burst: 2000,
	}, nil
}

func apiReady(ctx context.Context, cfg *rest.Config) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("%s/readyz: %w", cfg.Host, err)
	}
	if string(body) != "ok" {
		return fmt.Errorf("%s/readyz: %q", cfg.Host, body)
	}
	return nil
}

// featureGateArgs renders the feature gates every component gets; gates are
// set cluster-wide as a real cluster would, though only the API server reads
// MutablePVNodeAffinity (in PV update validation).
func (c *Cluster) featureGateArgs() []string {
	if !c.opts.MutablePVNodeAffinity {
		return nil
	}
	return []string{"--feature-gates=MutablePVNodeAffinity=true"}
}

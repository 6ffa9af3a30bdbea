package testbed

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
)

// ChartRelease is what `helm template` made of charts/linstor-affinity-sidecar.
type ChartRelease struct {
	// Objects are every rendered object, decoded.
	Objects []runtime.Object
	// Deployment is the sidecar's Deployment.
	Deployment *appsv1.Deployment
}

// Container returns the sidecar container of the Deployment.
func (r *ChartRelease) Container() *corev1.Container {
	for i := range r.Deployment.Spec.Template.Spec.Containers {
		if c := &r.Deployment.Spec.Template.Spec.Containers[i]; c.Name == SidecarBinaryName {
			return c
		}
	}
	return nil
}

// RenderChart runs bin/helm template on the chart as release
// linstor-affinity-sidecar in ControllerNamespace, with helm flags such as
// "--set", "linstor.endpoint=...".
func (b *Bed) RenderChart(ctx context.Context, helmArgs ...string) (*ChartRelease, error) {
	root, err := cluster.RepoRoot()
	if err != nil {
		return nil, err
	}
	bin, err := cluster.DefaultBinDir()
	if err != nil {
		return nil, err
	}
	helm := filepath.Join(bin, "helm")
	if _, err := os.Stat(helm); err != nil {
		return nil, fmt.Errorf("%s (make tools-deploy): %w", helm, cluster.ErrMissingBinary)
	}
	args := append([]string{"template", SidecarBinaryName, filepath.Join(root, "charts", SidecarBinaryName), "--namespace", ControllerNamespace}, helmArgs...)
	cmd := exec.CommandContext(ctx, helm, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(b.Cluster.Dir(), "helm"), "HELM_CONFIG_HOME="+filepath.Join(b.Cluster.Dir(), "helm"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm template: %w\n%s", err, stderr.String())
	}
	rel := &ChartRelease{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(&stdout))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("helm template output: %w", err)
		}
		if len(bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(doc), []byte("---")))) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("helm template output: %w\n%s", err, doc)
		}
		rel.Objects = append(rel.Objects, obj)
		if d, ok := obj.(*appsv1.Deployment); ok {
			rel.Deployment = d
		}
	}
	if rel.Deployment == nil || rel.Container() == nil {
		return nil, fmt.Errorf("helm template rendered no Deployment with container %s", SidecarBinaryName)
	}
	return rel, nil
}

// StartChartSidecar runs the sidecar as the chart's Deployment would: with
// the chart's RBAC (created here), a token of its service account, the
// container's args and environment, and the Secret volumes it mounts
// written to files where its *_FILE variables expect them. The bed then
// appends only what a test bed needs: --kubeconfig, its own
// --http-endpoint, and overrides (later flags win), e.g. a short
// --reconcile-rate. POD_NAME and POD_NAMESPACE come from the downward API
// in the chart and are set to ControllerPodName and ControllerNamespace.
func (b *Bed) StartChartSidecar(ctx context.Context, rel *ChartRelease, overrides ...string) error {
	sa := ""
	for _, obj := range rel.Objects {
		var err error
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			sa = o.Name
			_, err = b.Kube.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = b.Kube.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = b.Kube.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			_, err = b.Kube.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = b.Kube.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			return fmt.Errorf("chart object %T: %w", obj, err)
		}
	}
	spec := rel.Deployment.Spec.Template.Spec
	if spec.ServiceAccountName == "" || spec.ServiceAccountName != sa {
		return fmt.Errorf("chart Deployment runs as service account %q, the chart creates %q", spec.ServiceAccountName, sa)
	}
	kubeconfig, err := b.serviceAccountKubeconfig(ctx, ControllerNamespace, sa)
	if err != nil {
		return err
	}
	return b.startContainerSidecar(ctx, spec, rel.Container(), kubeconfig, overrides)
}

// StartControllerPodSidecar runs the sidecar as the container
// linstor-affinity-sidecar of the Pod ControllerPodName (see
// CreateControllerPod) would run: its args and environment, the emptyDir
// socket-dir mapped to the LINSTOR CSI driver's socket directory, with the
// CSI controller's service account.
func (b *Bed) StartControllerPodSidecar(ctx context.Context, overrides ...string) error {
	pod, err := b.Kube.CoreV1().Pods(ControllerNamespace).Get(ctx, ControllerPodName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("controller pod: %w", err)
	}
	for i := range pod.Spec.Containers {
		if c := &pod.Spec.Containers[i]; c.Name == SidecarBinaryName {
			return b.startContainerSidecar(ctx, pod.Spec, c, b.sidecarKubeconfig, overrides)
		}
	}
	return fmt.Errorf("controller pod has no container %s", SidecarBinaryName)
}

// startContainerSidecar runs the sidecar with a container's args and
// environment, as the kubelet would: Secret volumes written to files, the
// emptyDir socket-dir being the driver's socket directory, the downward
// API's POD_NAME and POD_NAMESPACE (ControllerPodName, ControllerNamespace).
func (b *Bed) startContainerSidecar(ctx context.Context, spec corev1.PodSpec, c *corev1.Container, kubeconfig string, overrides []string) error {
	if len(c.Command) > 0 {
		return fmt.Errorf("container %s sets command %q; the bed runs the binary with the args only", c.Name, c.Command)
	}
	mounts, err := b.materializeSecretMounts(ctx, spec, c)
	if err != nil {
		return err
	}
	for _, m := range c.VolumeMounts {
		if m.Name == "socket-dir" {
			mounts[strings.TrimSuffix(m.MountPath, "/")] = filepath.Dir(b.Driver.SocketPath())
		}
	}
	mapPath := func(v string) string {
		for mountPath, dir := range mounts {
			if v == mountPath || strings.HasPrefix(v, mountPath+"/") {
				return dir + strings.TrimPrefix(v, mountPath)
			}
		}
		return v
	}
	env := []string{"POD_NAMESPACE=" + ControllerNamespace}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name" && e.Name == "POD_NAME":
			// StartSidecar sets POD_NAME=ControllerPodName.
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env = append(env, e.Name+"="+ControllerNamespace)
		case e.ValueFrom != nil:
			return fmt.Errorf("container %s env %s: only plain values and the pod's name and namespace are supported here", c.Name, e.Name)
		default:
			env = append(env, e.Name+"="+mapPath(e.Value))
		}
	}
	args := make([]string, 0, len(c.Args)+len(overrides))
	for _, a := range c.Args {
		if name, val, ok := strings.Cut(a, "="); ok && strings.HasPrefix(val, "/") {
			a = name + "=" + mapPath(val)
		}
		args = append(args, a)
	}
	b.sidecarKubeconfig = kubeconfig
	b.opts.SidecarArgs = append(args, overrides...)
	b.opts.SidecarEnv = env
	return b.StartSidecar(ctx)
}

// materializeSecretMounts writes each Secret volume the container mounts,
// as the kubelet would, into a directory of the bed, and returns the
// directories by mount path.
func (b *Bed) materializeSecretMounts(ctx context.Context, spec corev1.PodSpec, c *corev1.Container) (map[string]string, error) {
	out := map[string]string{}
	for _, m := range c.VolumeMounts {
		for _, v := range spec.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			s, err := b.Kube.CoreV1().Secrets(ControllerNamespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("secret %s of volume %s: %w", v.Secret.SecretName, v.Name, err)
			}
			dir := filepath.Join(b.Cluster.Dir(), "volume-"+v.Name)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, err
			}
			for k, data := range s.Data {
				if err := os.WriteFile(filepath.Join(dir, k), data, 0o600); err != nil {
					return nil, err
				}
			}
			out[strings.TrimSuffix(m.MountPath, "/")] = dir
		}
	}
	return out, nil
}

// serviceAccountKubeconfig writes a kubeconfig with a token of a service
// account, as the pod's projected token would authenticate it.
// rewriteKubeconfigServer points the kubeconfig at path to server (the test
// bed's APIProxy), trusting caPEM, keeping its credentials.
func rewriteKubeconfigServer(path, server string, caPEM []byte) error {
	kc, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return err
	}
	for _, c := range kc.Clusters {
		c.Server, c.CertificateAuthorityData = server, caPEM
	}
	return clientcmd.WriteToFile(*kc, path)
}

func (b *Bed) serviceAccountKubeconfig(ctx context.Context, namespace, name string) (string, error) {
	tok, err := b.Kube.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for service account %s/%s: %w", namespace, name, err)
	}
	cfg := b.Cluster.RESTConfig()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["e2e"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	kc.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: name}
	kc.CurrentContext = "e2e"
	path := filepath.Join(b.Cluster.Dir(), name+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return "", fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return path, nil
}

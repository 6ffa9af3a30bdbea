package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
)

// ControllerPodName is the CSI controller pod the sidecar believes it runs
// in (POD_NAME); CreateControllerPod creates a Pod object of that name.
const ControllerPodName = "linstor-csi-controller-0"

// ControllerTLSSecret is the Secret Piraeus Operator v2 creates for LINSTOR
// CSI's client certificate (keys ca.crt, tls.crt, tls.key).
const ControllerTLSSecret = "linstor-csi-controller-tls"

// linstorClientEnv is golinstor's TLS environment for a client of a
// LinstorTLS simulator: the CA and a fresh client certificate and key, as
// PEM. Without LinstorTLS it is empty.
func (b *Bed) linstorClientEnv() ([]string, error) {
	if !b.opts.LinstorTLS {
		return nil, nil
	}
	cert, key, err := b.Sim.IssueClientCert("linstor-csi-controller")
	if err != nil {
		return nil, fmt.Errorf("client certificate for LINSTOR CSI: %w", err)
	}
	return []string{"LS_ROOT_CA=" + string(b.Sim.CACertPEM()), "LS_USER_CERTIFICATE=" + string(cert), "LS_USER_KEY=" + string(key)}, nil
}

// ControllerTLS is the client certificate material of the controller's TLS
// Secret, for tests that look for it where it must not be (logs).
type ControllerTLS struct {
	CA, Cert, Key []byte
}

// CreateControllerPod writes, as Piraeus Operator v2 deploys them, the TLS
// Secret ControllerTLSSecret (a fresh client certificate from the
// simulator's CA) and a Pod object ControllerPodName in ControllerNamespace
// whose linstor-csi container reaches LINSTOR at the simulator: LS_CONTROLLERS
// set directly, LS_ROOT_CA, LS_USER_CERTIFICATE and LS_USER_KEY as
// secretKeyRefs, --property-namespace in its args. The sidecar container is
// the one patches/linstorcluster-sidecar.yaml adds, as shipped. No kubelet
// runs the pod; only its spec matters. It needs a LinstorTLS bed.
func (b *Bed) CreateControllerPod(ctx context.Context) (ControllerTLS, error) {
	sidecar, err := PatchSidecarContainer()
	if err != nil {
		return ControllerTLS{}, err
	}
	material, err := b.CreateControllerTLSSecret(ctx)
	if err != nil {
		return ControllerTLS{}, err
	}
	fromSecret := func(name, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: ControllerTLSSecret}, Key: key,
		}}}
	}
	socket := corev1.VolumeMount{Name: "socket-dir", MountPath: "/csi"}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: ControllerPodName, Namespace: ControllerNamespace, Labels: map[string]string{
			"app.kubernetes.io/component": "linstor-csi-controller",
		}},
		Spec: corev1.PodSpec{
			ServiceAccountName: ControllerServiceAccount,
			Containers: []corev1.Container{
				{
					Name:  "linstor-csi",
					Image: "quay.io/piraeusdatastore/piraeus-csi:v1.6.4",
					Args: []string{
						"--csi-endpoint=unix:///csi/csi.sock", "--property-namespace=" + PropertyNamespace,
					},
					Env: []corev1.EnvVar{
						{Name: "LS_CONTROLLERS", Value: b.Sim.URL()},
						fromSecret("LS_ROOT_CA", "ca.crt"),
						fromSecret("LS_USER_CERTIFICATE", corev1.TLSCertKey),
						fromSecret("LS_USER_KEY", corev1.TLSPrivateKeyKey),
					},
					VolumeMounts: []corev1.VolumeMount{socket},
				},
				{
					Name:         "csi-provisioner",
					Image:        "registry.k8s.io/sig-storage/csi-provisioner:v5.3.0",
					Args:         []string{"--csi-address=/csi/csi.sock", "--feature-gates=Topology=true", "--leader-election=true"},
					VolumeMounts: []corev1.VolumeMount{socket},
				},
				*sidecar,
			},
			Volumes: []corev1.Volume{{Name: "socket-dir", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
	if _, err := b.Kube.CoreV1().Pods(ControllerNamespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return ControllerTLS{}, fmt.Errorf("create pod %s: %w", ControllerPodName, err)
	}
	return material, nil
}

// CreateControllerTLSSecret writes the Secret ControllerTLSSecret in
// ControllerNamespace, as Piraeus Operator v2 (cert-manager) issues it: the
// simulator's CA and a fresh client certificate it accepts. It needs a
// LinstorTLS bed.
func (b *Bed) CreateControllerTLSSecret(ctx context.Context) (ControllerTLS, error) {
	ca := b.Sim.CACertPEM()
	if ca == nil {
		return ControllerTLS{}, fmt.Errorf("secret %s: the simulator serves no TLS (Options.LinstorTLS)", ControllerTLSSecret)
	}
	cert, key, err := b.Sim.IssueClientCert("linstor-csi-controller")
	if err != nil {
		return ControllerTLS{}, fmt.Errorf("secret %s: %w", ControllerTLSSecret, err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: ControllerTLSSecret, Namespace: ControllerNamespace},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"ca.crt": ca, corev1.TLSCertKey: cert, corev1.TLSPrivateKeyKey: key},
	}
	if _, err := b.Kube.CoreV1().Secrets(ControllerNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return ControllerTLS{}, fmt.Errorf("create secret %s: %w", ControllerTLSSecret, err)
	}
	return ControllerTLS{CA: ca, Cert: cert, Key: key}, nil
}

// readSidecarPatch reads patches/linstorcluster-sidecar.yaml, the file users
// apply, and says where it is.
func readSidecarPatch() (data []byte, path string, err error) {
	root, err := cluster.RepoRoot()
	if err != nil {
		return nil, "", err
	}
	path = filepath.Join(root, "patches", "linstorcluster-sidecar.yaml")
	data, err = os.ReadFile(path)
	return data, path, err
}

// PatchSidecarContainer is the container patches/linstorcluster-sidecar.yaml
// adds to the CSI controller pod, read from the file users apply.
func PatchSidecarContainer() (*corev1.Container, error) {
	data, path, err := readSidecarPatch()
	if err != nil {
		return nil, err
	}
	var patch struct {
		Spec struct {
			// The patch also turns the operator's affinity controller
			// off; test/deploy checks that part.
			AffinityController struct {
				Enabled bool `json:"enabled"`
			} `json:"affinityController"`
			CSIController struct {
				PodTemplate corev1.PodTemplateSpec `json:"podTemplate"`
			} `json:"csiController"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(data, &patch); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, c := range patch.Spec.CSIController.PodTemplate.Spec.Containers {
		if c.Name == SidecarBinaryName {
			return &c, nil
		}
	}
	return nil, fmt.Errorf("%s adds no container %s", path, SidecarBinaryName)
}

package testbed

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// OperatorModel names the Piraeus Operator v2 source the CSI controller
// Deployment and its RBAC are modelled on: the kustomize resources under
// pkg/resources/cluster/csi-controller/ (csi-controller-deployment.yaml and
// csi-controller-service-account.yaml) of piraeusdatastore/piraeus-operator
// at commit 0761a36bb6e0, plus what the operator changes for
// spec.apiTLS (LS_CONTROLLERS on https, the client certificate from the
// Secret linstor-csi-controller-tls).
const OperatorModel = "piraeus-operator v2 pkg/resources/cluster/csi-controller @0761a36bb6e0"

// CSIControllerDeploymentName is the operator's Deployment.
const CSIControllerDeploymentName = "linstor-csi-controller"

// operatorClusterRules are the ClusterRole linstor-csi-controller of
// OperatorModel, reduced to the resources of the core, storage and
// coordination groups this control plane serves (the snapshot groups are
// CRDs it does not have).
var operatorClusterRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"persistentvolumes"}, Verbs: []string{"get", "list", "watch", "create", "delete", "patch"}},
	{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: []string{"get", "list", "watch", "update"}},
	{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims/status"}, Verbs: []string{"patch"}},
	{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"storageclasses", "csinodes", "volumeattributesclasses"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"volumeattachments"}, Verbs: []string{"get", "list", "watch", "patch"}},
	{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"volumeattachments/status"}, Verbs: []string{"patch"}},
	{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
	{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}},
	{APIGroups: []string{""}, Resources: []string{"pods", "nodes"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"linstor-csi-nfs-server-reactor-config"}, Verbs: []string{"get", "update"}},
	{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "update"}},
}

// operatorNamespaceRules are its Role in the operator's namespace.
var operatorNamespaceRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "watch", "list", "delete", "update", "create"}},
	{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"csistoragecapacities"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}},
	{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"get"}},
}

// ApplyOperatorRBAC gives the service account linstor-csi-controller
// exactly the operator's ClusterRole and Role (OperatorModel), replacing the
// rules the bed started with.
func (b *Bed) ApplyOperatorRBAC(ctx context.Context) error {
	cr, err := b.Kube.RbacV1().ClusterRoles().Get(ctx, ControllerServiceAccount, metav1.GetOptions{})
	if err != nil {
		return err
	}
	cr.Rules = operatorClusterRules
	if _, err := b.Kube.RbacV1().ClusterRoles().Update(ctx, cr, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("cluster role: %w", err)
	}
	r, err := b.Kube.RbacV1().Roles(ControllerNamespace).Get(ctx, ControllerServiceAccount, metav1.GetOptions{})
	if err != nil {
		return err
	}
	r.Rules = operatorNamespaceRules
	if _, err := b.Kube.RbacV1().Roles(ControllerNamespace).Update(ctx, r, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("role: %w", err)
	}
	return nil
}

// OperatorCSIControllerDeployment is Deployment linstor-csi-controller as
// the operator renders it for a LinstorCluster with apiTLS, with the two
// containers this bed can run (linstor-csi, csi-provisioner): their images
// are the operator's (quay.io/piraeusdatastore/piraeus-csi,
// registry.k8s.io/sig-storage/csi-provisioner) and linstorURL is the
// operator's https://linstor-controller.<ns>.svc:3371 in a real cluster.
func OperatorCSIControllerDeployment(linstorURL string) *appsv1.Deployment {
	labels := map[string]string{"app.kubernetes.io/component": "linstor-csi-controller"}
	dropAll := &corev1.SecurityContext{
		ReadOnlyRootFilesystem: ptr.To(true),
		Capabilities:           &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	socket := []corev1.VolumeMount{{Name: "socket-dir", MountPath: "/csi"}}
	address := corev1.EnvVar{Name: "ADDRESS", Value: "/csi/csi.sock"}
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
	}
	fromSecret := func(name, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: ControllerTLSSecret}, Key: key,
		}}}
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: CSIControllerDeploymentName, Namespace: ControllerNamespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      labels,
					Annotations: map[string]string{"kubectl.kubernetes.io/default-container": "linstor-csi"},
				},
				Spec: corev1.PodSpec{
					EnableServiceLinks: ptr.To(false),
					ServiceAccountName: ControllerServiceAccount,
					Containers: []corev1.Container{
						{
							Name:  "linstor-csi",
							Image: "quay.io/piraeusdatastore/piraeus-csi:v1.6.4",
							Args:  []string{"--csi-endpoint=unix://$(ADDRESS)", "--property-namespace=" + PropertyNamespace, "--label-by-storage-pool=false"},
							Env: []corev1.EnvVar{
								address,
								{Name: "LS_CONTROLLERS", Value: linstorURL},
								fromSecret("LS_ROOT_CA", "ca.crt"),
								fromSecret("LS_USER_CERTIFICATE", corev1.TLSCertKey),
								fromSecret("LS_USER_KEY", corev1.TLSPrivateKeyKey),
							},
							VolumeMounts: socket,
							Ports:        []corev1.ContainerPort{{Name: "healthz", ContainerPort: 9808}},
							LivenessProbe: &corev1.Probe{
								ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstrName("healthz")}},
								InitialDelaySeconds: 5, TimeoutSeconds: 5,
							},
							SecurityContext: dropAll.DeepCopy(),
						},
						{
							Name:  "csi-provisioner",
							Image: "registry.k8s.io/sig-storage/csi-provisioner:v5.3.0",
							Args: []string{
								"--csi-address=$(ADDRESS)", "--timeout=1m", "--default-fstype=ext4", "--feature-gates=Topology=true",
								"--leader-election=true", "--leader-election-namespace=$(NAMESPACE)", "--enable-capacity",
								"--extra-create-metadata", "--capacity-ownerref-level=2", "--worker-threads=10",
							},
							Env:             []corev1.EnvVar{address, field("NAMESPACE", "metadata.namespace"), field("POD_NAME", "metadata.name")},
							VolumeMounts:    socket,
							SecurityContext: dropAll.DeepCopy(),
						},
					},
					Tolerations: []corev1.Toleration{
						{Effect: corev1.TaintEffectNoSchedule, Key: "drbd.linbit.com/lost-quorum"},
						{Effect: corev1.TaintEffectNoSchedule, Key: "drbd.linbit.com/force-io-error"},
					},
					Volumes: []corev1.Volume{{Name: "socket-dir", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				},
			},
		},
	}
}

// ApplySidecarPodTemplate strategic-merges spec.csiController.podTemplate of
// patches/linstorcluster-sidecar.yaml into d's pod template, as the operator
// applies a LinstorCluster's podTemplate (containers merge by name).
func ApplySidecarPodTemplate(d *appsv1.Deployment) (*appsv1.Deployment, error) {
	data, path, err := readSidecarPatch()
	if err != nil {
		return nil, err
	}
	var lc struct {
		Spec struct {
			CSIController struct {
				PodTemplate json.RawMessage `json:"podTemplate"`
			} `json:"csiController"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &lc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"template": lc.Spec.CSIController.PodTemplate}})
	if err != nil {
		return nil, err
	}
	orig, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	merged, err := strategicpatch.StrategicMergePatch(orig, patch, appsv1.Deployment{})
	if err != nil {
		return nil, fmt.Errorf("strategic merge of %s: %w", path, err)
	}
	out := &appsv1.Deployment{}
	if err := json.Unmarshal(merged, out); err != nil {
		return nil, err
	}
	return out, nil
}

// PodEdits are the changes these machines force on the operator's pod,
// applied by ForceEdits and listed by the tests (Description).
type PodEdit struct {
	Description string
	apply       func(*corev1.PodSpec)
}

// MachineEdits returns the edits for a pod on node nodeName whose API server
// is at apiHost:apiPort and whose LINSTOR is the simulator:
//   - hostNetwork: the node has no pod network (no CNI); pods reach the API
//     server and the simulator on loopback;
//   - KUBERNETES_SERVICE_HOST/PORT on every container: without kube-proxy
//     the kubernetes Service's cluster IP leads nowhere; its endpoint is
//     127.0.0.1:<port>;
//   - nodeSelector kubernetes.io/hostname: the bed's other Nodes have no
//     kubelet;
//   - images: built here and imported (e2e.local/...), no registry;
//   - no liveness probe on linstor-csi: its port 9808 is served by the
//     operator's csi-livenessprobe container, which this bed does not build;
//   - the init container linstor-wait-api-online is left out with that
//     container (its /linstor-wait-until is not built here either).
func MachineEdits(nodeName, apiHost string, apiPort int) []PodEdit {
	images := map[string]string{
		"linstor-csi":              LinstorCSIImage,
		"csi-provisioner":          CSIProvisionerImage,
		"linstor-affinity-sidecar": SidecarImage,
	}
	return []PodEdit{
		{"hostNetwork: true (no pod network on the test node)", func(s *corev1.PodSpec) { s.HostNetwork = true }},
		{"nodeSelector kubernetes.io/hostname=" + nodeName + " (the only Node with a kubelet)", func(s *corev1.PodSpec) {
			s.NodeSelector = map[string]string{corev1.LabelHostname: nodeName}
		}},
		{"env KUBERNETES_SERVICE_HOST=" + apiHost + ", KUBERNETES_SERVICE_PORT=" + strconv.Itoa(apiPort) + " on every container (no kube-proxy)", func(s *corev1.PodSpec) {
			for i := range s.Containers {
				s.Containers[i].Env = append(s.Containers[i].Env,
					corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: apiHost},
					corev1.EnvVar{Name: "KUBERNETES_SERVICE_PORT", Value: strconv.Itoa(apiPort)})
			}
		}},
		{"images e2e.local/* built by hack/ociimage and imported into the node (no registry)", func(s *corev1.PodSpec) {
			for i := range s.Containers {
				if img, ok := images[s.Containers[i].Name]; ok {
					s.Containers[i].Image = img
				}
			}
		}},
		{"no livenessProbe on linstor-csi (its csi-livenessprobe container is not built here)", func(s *corev1.PodSpec) {
			for i := range s.Containers {
				if s.Containers[i].Name == "linstor-csi" {
					s.Containers[i].LivenessProbe = nil
				}
			}
		}},
	}
}

// ForceEdits applies edits to d's pod template.
func ForceEdits(d *appsv1.Deployment, edits []PodEdit) {
	for _, e := range edits {
		e.apply(&d.Spec.Template.Spec)
	}
}

func intstrName(name string) intstr.IntOrString { return intstr.FromString(name) }

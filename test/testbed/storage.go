package testbed

import (
	"context"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Remote access policies in the text form of the StorageClass parameter
// linstor.csi.linbit.com/allowRemoteVolumeAccess.
const (
	// PolicyStrict: only the nodes holding the data.
	PolicyStrict = "false"
	// PolicyAnywhere: every node; the PV has no node affinity.
	PolicyAnywhere = "true"
	// PolicyZone: every node in a zone holding the data.
	PolicyZone = "- fromSame:\n  - topology.kubernetes.io/zone\n"
	// PolicyHostInZone: a rule of two keys, so each affinity term has two
	// expressions (whose order the external-provisioner does not fix).
	PolicyHostInZone = "- fromSame:\n  - linbit.com/hostname\n  - topology.kubernetes.io/zone\n"
)

// Annotations and parameters of the provisioning chain.
const (
	// SelectedNodeAnnotation is what kube-scheduler sets on a claim of a
	// WaitForFirstConsumer class once it picked a node for the first pod.
	SelectedNodeAnnotation = "volume.kubernetes.io/selected-node"
	// ProvisionedByAnnotation names the provisioner on PVs it created.
	ProvisionedByAnnotation = "pv.kubernetes.io/provisioned-by"
	paramPrefix             = "linstor.csi.linbit.com/"
	// Namespace is where the test workloads (claims and pods) live.
	Namespace = metav1.NamespaceDefault
)

// StorageClass describes a LINSTOR CSI StorageClass.
type StorageClass struct {
	Name string
	// Policy is allowRemoteVolumeAccess; empty leaves the parameter out.
	Policy string
	// Replicas is placementCount; zero means 1.
	Replicas int
	// Immediate binds at once instead of WaitForFirstConsumer.
	Immediate bool
}

// CreateStorageClass creates a StorageClass of LINSTOR CSI on the default
// pool, with delayed binding unless Immediate.
func (b *Bed) CreateStorageClass(ctx context.Context, sc StorageClass) error {
	replicas := max(sc.Replicas, 1)
	params := map[string]string{
		paramPrefix + "storagePool":    DefaultPool,
		paramPrefix + "placementCount": strconv.Itoa(replicas),
	}
	if sc.Policy != "" {
		params[paramPrefix+"allowRemoteVolumeAccess"] = sc.Policy
	}
	mode := storagev1.VolumeBindingWaitForFirstConsumer
	if sc.Immediate {
		mode = storagev1.VolumeBindingImmediate
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	obj := &storagev1.StorageClass{
		ObjectMeta:           metav1.ObjectMeta{Name: sc.Name},
		Provisioner:          DriverName,
		Parameters:           params,
		ReclaimPolicy:        &reclaim,
		VolumeBindingMode:    &mode,
		AllowVolumeExpansion: ptr.To(true),
	}
	if _, err := b.Kube.StorageV1().StorageClasses().Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create storage class %s: %w", sc.Name, err)
	}
	return nil
}

// Claim describes a PersistentVolumeClaim for the provisioner.
type Claim struct {
	Name         string
	StorageClass string
	// Node is where the first consumer was scheduled: with delayed binding
	// the claim gets the scheduler's selected-node annotation, so LINSTOR
	// CSI is asked to place a replica there.
	Node string
	// Size defaults to 1Gi.
	Size string
}

// CreateClaim creates a claim in Namespace; the provisioner takes it from there.
func (b *Bed) CreateClaim(ctx context.Context, c Claim) (*corev1.PersistentVolumeClaim, error) {
	size := c.Size
	if size == "" {
		size = "1Gi"
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: c.Name, Namespace: Namespace},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(c.StorageClass),
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			},
		},
	}
	if c.Node != "" {
		pvc.Annotations = map[string]string{SelectedNodeAnnotation: c.Node}
	}
	created, err := b.Kube.CoreV1().PersistentVolumeClaims(Namespace).Create(ctx, pvc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create claim %s: %w", c.Name, err)
	}
	return created, nil
}

// ProvisionVolumes creates the claims and waits until each is Bound to a PV
// the external-provisioner made; it returns the PVs by claim name.
func (b *Bed) ProvisionVolumes(ctx context.Context, claims ...Claim) (map[string]*corev1.PersistentVolume, error) {
	for _, c := range claims {
		if _, err := b.CreateClaim(ctx, c); err != nil {
			return nil, err
		}
	}
	out := make(map[string]*corev1.PersistentVolume, len(claims))
	for _, c := range claims {
		pvc, err := b.WaitClaimBound(ctx, c.Name, "")
		if err != nil {
			return nil, err
		}
		pv, err := b.Kube.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("PV %s of claim %s: %w", pvc.Spec.VolumeName, c.Name, err)
		}
		out[c.Name] = pv
	}
	return out, nil
}

// StaticVolume describes a PV created directly (not by the provisioner),
// with a claim bound to it, for volumes the provisioner cannot make here:
// several PVs on one resource definition, PVs of other drivers.
type StaticVolume struct {
	PV           string
	Claim        string
	Driver       string // default DriverName
	Handle       string
	StorageClass string
	Affinity     *corev1.VolumeNodeAffinity
	Annotations  map[string]string
	// Size defaults to 1Gi.
	Size string
}

// CreateStaticVolume creates the PV as the external-provisioner would have
// (CSI source, provisioned-by annotation, claimRef, reclaim policy Delete)
// and a claim naming it, and waits until the claim is Bound to it.
func (b *Bed) CreateStaticVolume(ctx context.Context, v StaticVolume) (*corev1.PersistentVolume, error) {
	if err := b.createStatic(ctx, v, false); err != nil {
		return nil, err
	}
	if _, err := b.WaitClaimBound(ctx, v.Claim, v.PV); err != nil {
		return nil, err
	}
	return b.Kube.CoreV1().PersistentVolumes().Get(ctx, v.PV, metav1.GetOptions{})
}

// createStatic creates the PV and claim of v; withFinalizer puts
// ProvisionerFinalizer on PVs of DriverName, as the external-provisioner
// would soon after binding.
func (b *Bed) createStatic(ctx context.Context, v StaticVolume, withFinalizer bool) error {
	driver := v.Driver
	if driver == "" {
		driver = DriverName
	}
	size := v.Size
	if size == "" {
		size = "1Gi"
	}
	annotations := map[string]string{ProvisionedByAnnotation: driver}
	for k, val := range v.Annotations {
		annotations[k] = val
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: v.PV, Annotations: annotations},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              v.StorageClass,
			NodeAffinity:                  v.Affinity,
			VolumeMode:                    ptr.To(corev1.PersistentVolumeFilesystem),
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: Namespace, Name: v.Claim},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: driver, VolumeHandle: v.Handle, FSType: "ext4",
			}},
		},
	}
	if withFinalizer && driver == DriverName {
		pv.Finalizers = []string{ProvisionerFinalizer}
	}
	if _, err := b.Kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create PV %s: %w", v.PV, err)
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: v.Claim, Namespace: Namespace},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(v.StorageClass),
			VolumeName:       v.PV,
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			},
		},
	}
	if _, err := b.Kube.CoreV1().PersistentVolumeClaims(Namespace).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create claim %s: %w", v.Claim, err)
	}
	return nil
}

// CreatePod creates a pod in Namespace using the claim, as a StatefulSet
// would; nodeSelector pins it to a node when not empty. Nothing runs it:
// there is no kubelet, only the scheduler's decision counts.
func (b *Bed) CreatePod(ctx context.Context, name, claim string, nodeSelector map[string]string) (*corev1.Pod, error) {
	pod := ClaimPod(name, claim, "e2e")
	pod.Spec.NodeSelector = nodeSelector
	created, err := b.Kube.CoreV1().Pods(Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s: %w", name, err)
	}
	return created, nil
}

// ClaimPod is a pod in Namespace, labelled app=<app>, whose one container
// mounts the claim, with termination grace period 0 (no kubelet would ever
// confirm a graceful end).
func ClaimPod(name, claim, app string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{
				Name: "app", Image: "registry.k8s.io/pause:3.10",
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
			}}},
		},
	}
}

// DeletePod deletes a pod at once (grace period 0), as the node it ran on is
// gone and no kubelet will confirm anything, and waits until it is gone.
func (b *Bed) DeletePod(ctx context.Context, name string) error {
	err := b.Kube.CoreV1().Pods(Namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	if err != nil {
		return fmt.Errorf("delete pod %s: %w", name, err)
	}
	return Poll(ctx, "pod "+name+" gone", func(ctx context.Context) (bool, string) {
		_, err := b.Kube.CoreV1().Pods(Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil && !isNotFound(err) {
			return false, err.Error()
		}
		return isNotFound(err), "still there"
	})
}

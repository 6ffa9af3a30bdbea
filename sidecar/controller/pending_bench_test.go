package controller

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// pendingPod is a Pending pod of a StatefulSet-like workload as the API
// server sends it: labels, owner, two containers with env, probes and
// resources, a claim, projected token volume, tolerations, and the
// scheduler's conditions.
func pendingPod(i int) *corev1.Pod {
	name := fmt.Sprintf("db-%05d", i)
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz"}}, PeriodSeconds: 10}
	container := func(n string) corev1.Container {
		return corev1.Container{
			Name: n, Image: "registry.example.com/team/" + n + ":1.2.3",
			Args: []string{"--config=/etc/app/config.yaml", "--data=/var/lib/data"},
			Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "MODE", Value: "replica"}, {Name: "LOG_LEVEL", Value: "info"}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("512Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
			},
			VolumeMounts:   []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/data"}, {Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
			LivenessProbe:  probe,
			ReadinessProbe: probe,
		}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "apps", UID: types.UID(fmt.Sprintf("0000-%08d", i)), ResourceVersion: fmt.Sprint(100000 + i),
			Labels:          map[string]string{"app": "db", "statefulset.kubernetes.io/pod-name": name, "controller-revision-hash": "db-7c9f8d6b5"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", UID: "1111"}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: make([]byte, 1500)}}},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{container("db"), container("exporter")},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-" + name}}},
				{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}}},
				}}}},
			},
			Tolerations: []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBurstable, Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
			Message: msgAffinity, LastTransitionTime: metav1.NewTime(time.Now()),
		}}},
	}
}

// BenchmarkPendingPodCache10k is what 10,000 blocked pods cost the sidecar:
// the pending-pod cache (keys only) and the Blocked set, as heap retained
// after a collection. The full pods are what the API server sends; they are
// garbage once transformed.
func BenchmarkPendingPodCache10k(b *testing.B) {
	const n = 10000
	var retained float64
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
		blocked := NewBlocked()
		for j := 0; j < n; j++ {
			obj, err := blocked.Transform(pendingPod(j))
			if err != nil {
				b.Fatal(err)
			}
			if err := store.Add(obj); err != nil {
				b.Fatal(err)
			}
			blocked.Changed(store, obj)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if blocked.Len() != n {
			b.Fatalf("blocked = %d, want %d", blocked.Len(), n)
		}
		retained = float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
		runtime.KeepAlive(store)
		runtime.KeepAlive(blocked)
	}
	b.ReportMetric(retained, "retained-MiB")
	b.ReportMetric(retained*(1<<20)/n, "B/pod")
}

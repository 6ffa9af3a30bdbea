package cluster

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// CreateReadyNode registers a schedulable Node the way a kubelet would, since
// the test bed runs none: labels (plus kubernetes.io/hostname), the Ready
// condition and allocatable cpu/memory/pods. It also drops the not-ready
// taint the TaintNodesByCondition admission plugin puts on every new node;
// the node lifecycle controller that would lift it is off here.
func CreateReadyNode(ctx context.Context, cs kubernetes.Interface, name string, labels map[string]string) (*corev1.Node, error) {
	all := map[string]string{corev1.LabelHostname: name}
	maps.Copy(all, labels)
	node, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: all},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("node %s: create: %w", name, err)
	}
	// Controllers (the TTL controller, for one) touch new nodes too, so
	// each change is a read-modify-write retried on conflict.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(cur.Spec.Taints) == 0 {
			node = cur
			return nil
		}
		cur.Spec.Taints = nil
		node, err = cs.CoreV1().Nodes().Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("node %s: remove taints: %w", name, err)
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("8"),
		corev1.ResourceMemory: resource.MustParse("32Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		cur.Status.Capacity = res
		cur.Status.Allocatable = res
		cur.Status.Conditions = []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			Reason: "KubeletReady", Message: "stand-in for a kubelet (test bed)",
			LastHeartbeatTime: now, LastTransitionTime: now,
		}}
		node, err = cs.CoreV1().Nodes().UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("node %s: mark ready: %w", name, err)
	}
	return node, nil
}

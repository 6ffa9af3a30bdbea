package testbed

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
)

// Topology keys of LINSTOR CSI and Kubernetes.
const (
	HostnameKey     = "linbit.com/hostname"
	KubeHostnameKey = corev1.LabelHostname
	ZoneKey         = corev1.LabelTopologyZone
	// storagePoolKeyPrefix marks the pools a node has in LINSTOR CSI's
	// NodeGetInfo topology (--label-by-storage-pool, on by default).
	storagePoolKeyPrefix = "linbit.com/sp-"
	// DefaultPool is the LVM thin pool every default node has.
	DefaultPool = "thin"
)

// Node is a storage node: a LINSTOR satellite with a pool and a Kubernetes
// node of the same name.
type Node struct {
	Name string
	// Zone becomes the LINSTOR property <ns>/topology.kubernetes.io/zone.
	Zone string
	// Pools default to one pool named DefaultPool.
	Pools []linstorsim.StoragePool
}

// DefaultNodes are n1, n2 in zone-a and n3, n4 in zone-b.
func DefaultNodes() []Node {
	return []Node{{Name: "n1", Zone: "zone-a"}, {Name: "n2", Zone: "zone-a"}, {Name: "n3", Zone: "zone-b"}, {Name: "n4", Zone: "zone-b"}}
}

// AddNode registers a satellite in the simulator (with the hostname
// properties Piraeus sets) and its Kubernetes Node and CSINode.
func (b *Bed) AddNode(ctx context.Context, n Node) error {
	if len(n.Pools) == 0 {
		n.Pools = []linstorsim.StoragePool{{Name: DefaultPool}}
	}
	props := map[string]string{}
	if n.Zone != "" {
		props[PropertyNamespace+"/"+ZoneKey] = n.Zone
	}
	if err := b.Sim.AddNode(n.Name, props, n.Pools...); err != nil {
		return err
	}
	b.nodes[n.Name] = n
	return b.RegisterNode(ctx, n.Name)
}

// NodeTopology is the topology LINSTOR CSI's NodeGetInfo reports for a node:
// its name under linbit.com/hostname, one linbit.com/sp-<pool> key per
// storage pool, and every node property under the property namespace.
func (b *Bed) NodeTopology(name string) (map[string]string, error) {
	props, err := b.Sim.NodeProps(name)
	if err != nil {
		return nil, err
	}
	seg := map[string]string{HostnameKey: name}
	for _, p := range b.nodes[name].Pools {
		seg[storagePoolKeyPrefix+p.Name] = "true"
	}
	prefix := PropertyNamespace + "/"
	for k, v := range props {
		if len(k) > len(prefix) && k[:len(prefix)] == prefix {
			seg[k[len(prefix):]] = v
		}
	}
	return seg, nil
}

// RegisterNode does what the kubelet and the node-driver-registrar do when
// LINSTOR CSI's node plugin starts on a node: a Ready, untainted Node with
// room for pods (cluster.CreateReadyNode), labelled with the driver's
// topology, and a CSINode listing the driver with its topology keys.
func (b *Bed) RegisterNode(ctx context.Context, name string) error {
	topo, err := b.NodeTopology(name)
	if err != nil {
		return err
	}
	labels := map[string]string{corev1.LabelOSStable: "linux"}
	keys := make([]string, 0, len(topo))
	for k, v := range topo {
		labels[k] = v
		keys = append(keys, k)
	}
	sort.Strings(keys)
	node, err := cluster.CreateReadyNode(ctx, b.Kube, name, labels)
	if err != nil {
		return err
	}
	csiNode := &storagev1.CSINode{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: name, UID: node.UID,
			}},
		},
		Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{{Name: DriverName, NodeID: name, TopologyKeys: keys}}},
	}
	if _, err := b.Kube.StorageV1().CSINodes().Create(ctx, csiNode, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create CSINode %s: %w", name, err)
	}
	return nil
}

// DeleteKubeNode removes a node from Kubernetes as a cluster autoscaler or
// an operator rotating it out would: the Node and its CSINode go.
func (b *Bed) DeleteKubeNode(ctx context.Context, name string) error {
	if err := b.Kube.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete node %s: %w", name, err)
	}
	if err := b.Kube.StorageV1().CSINodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete CSINode %s: %w", name, err)
	}
	return nil
}

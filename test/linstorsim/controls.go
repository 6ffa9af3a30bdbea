package linstorsim

import (
	"slices"
	"sort"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

// This file is the Go face of the scenario controls. Each call is one
// atomic change; errors name the object and wrap an *APIError.

// AddNode registers a satellite with props and storage pools (a node
// without pools is diskless-only). Like Piraeus, it also sets
// <ns>/linbit.com/hostname and <ns>/kubernetes.io/hostname to the node name
// unless props already have them.
func (s *Sim) AddNode(name string, props map[string]string, pools ...StoragePool) error {
	all := copyProps(props)
	for _, key := range []string{"linbit.com/hostname", "kubernetes.io/hostname"} {
		k := s.opts.PropertyNamespace + "/" + key
		if _, ok := all[k]; !ok {
			all[k] = name
		}
	}
	return wrapf(s.st.addNode(name, all, pools), "add node %s", name)
}

// RemoveNode deletes a node with every resource on it, like
// `linstor node lost`; the lost replicas are logged as deletions.
func (s *Sim) RemoveNode(name string) error {
	return wrapf(s.st.removeNode(name, true, simActor), "remove node %s", name)
}

// SetNodeProps sets and deletes node properties.
func (s *Sim) SetNodeProps(name string, set map[string]string, del ...string) error {
	return wrapf(s.st.modifyNodeProps(name, client.GenericPropsModify{OverrideProps: set, DeleteProps: del}), "set props of node %s", name)
}

// NodeProps returns a copy of a node's properties.
func (s *Sim) NodeProps(name string) (map[string]string, error) {
	n, err := s.st.node(name)
	if err != nil {
		return nil, wrapf(err, "props of node %s", name)
	}
	return copyProps(n.props), nil
}

// SetNodeOnline switches a node's connection status (OFFLINE nodes get no
// new replicas).
func (s *Sim) SetNodeOnline(name string, online bool) error {
	return wrapf(s.st.changeNode(name, func(n *nodeRec) error {
		n.online = online
		return nil
	}), "set node %s online=%v", name, online)
}

// SetNodeEvacuating sets or clears a node's EVACUATE flag.
func (s *Sim) SetNodeEvacuating(name string, on bool) error {
	return wrapf(s.st.setNodeFlag(name, lapiconst.FlagEvacuate, on), "set node %s evacuating=%v", name, on)
}

// Nodes lists the node names in order.
func (s *Sim) Nodes() []string {
	s.st.rlock()
	defer s.st.mu.RUnlock()
	var out []string
	for _, n := range s.st.sortedNodes() {
		out = append(out, n.name)
	}
	return out
}

// ResourceGroupSpec describes a resource group to create.
type ResourceGroupSpec struct {
	Name         string            `json:"name"`
	PlaceCount   int32             `json:"placeCount,omitempty"`
	StoragePools []string          `json:"storagePools,omitempty"`
	Props        map[string]string `json:"props,omitempty"`
}

// AddResourceGroup creates a resource group with a place count and pools.
func (s *Sim) AddResourceGroup(spec ResourceGroupSpec) error {
	return wrapf(s.st.createRG(client.ResourceGroup{
		Name:  spec.Name,
		Props: spec.Props,
		SelectFilter: client.AutoSelectFilter{
			PlaceCount:      spec.PlaceCount,
			StoragePoolList: spec.StoragePools,
		},
	}), "add resource group %s", spec.Name)
}

// VolumeSpec describes a volume (resource definition) to create with its
// replicas already placed.
type VolumeSpec struct {
	Name string `json:"name"`
	// ResourceGroup defaults to DfltRscGrp.
	ResourceGroup string `json:"resourceGroup,omitempty"`
	// SizesKiB has one size per volume number 0..n-1; default one 1 GiB
	// volume.
	SizesKiB []uint64 `json:"sizesKiB,omitempty"`
	// Diskful, Diskless and TieBreaker name the nodes of each replica kind.
	Diskful    []string `json:"diskful,omitempty"`
	Diskless   []string `json:"diskless,omitempty"`
	TieBreaker []string `json:"tieBreaker,omitempty"`
	// Pool is the storage pool of the diskful replicas; default the group's
	// pool, else the node's pool with the most room.
	Pool string `json:"pool,omitempty"`
	// Props are resource definition properties.
	Props map[string]string `json:"props,omitempty"`
	// VDProps are volume definition properties by volume number.
	VDProps map[int32]map[string]string `json:"vdProps,omitempty"`
}

// CreateVolume creates a resource definition, its volume definitions and
// its replicas in one step; nothing is created when any part fails.
func (s *Sim) CreateVolume(spec VolumeSpec) error {
	return wrapf(s.st.createVolume(spec), "create volume %s", spec.Name)
}

// DeleteVolume deletes a resource definition with everything in it, as an
// administrator would; it is logged with Via "sim".
func (s *Sim) DeleteVolume(rd string) error {
	return wrapf(s.st.deleteRD(rd, simActor), "delete volume %s", rd)
}

// ReplicaKind is the kind of replica AddReplica creates.
type ReplicaKind string

// The replica kinds.
const (
	Diskful    ReplicaKind = "diskful"
	Diskless   ReplicaKind = "diskless"
	TieBreaker ReplicaKind = "tiebreaker"
)

func (k ReplicaKind) flags() ([]string, error) {
	switch k {
	case Diskful, "":
		return nil, nil
	case Diskless:
		return []string{lapiconst.FlagDiskless, lapiconst.FlagDrbdDiskless}, nil
	case TieBreaker:
		return []string{lapiconst.FlagDiskless, lapiconst.FlagDrbdDiskless, lapiconst.FlagTieBreaker}, nil
	}
	return nil, errInvalid("unknown replica kind %q", k)
}

// AddReplica places a replica of rd on node.
func (s *Sim) AddReplica(rd, node string, kind ReplicaKind) error {
	flags, err := kind.flags()
	if err != nil {
		return wrapf(err, "add replica of %s on %s", rd, node)
	}
	return wrapf(s.st.createResource(rd, node, flags, "", nil), "add %s replica of %s on %s", kind, rd, node)
}

// DeleteReplica removes rd's replica on node (logged as a deletion).
func (s *Sim) DeleteReplica(rd, node string) error {
	return wrapf(s.st.deleteResource(rd, node, simActor), "delete replica of %s on %s", rd, node)
}

// MoveReplica moves rd's diskful replica from one node to another.
func (s *Sim) MoveReplica(rd, from, to string) error {
	return wrapf(s.st.moveReplica(rd, from, to), "move replica of %s from %s to %s", rd, from, to)
}

// EvacuateNode moves every diskful replica off node, each to the eligible
// node holding the fewest resources (ties by name), and flags the node
// EVACUATE. It returns the moves made; the error lists replicas that found
// no target.
func (s *Sim) EvacuateNode(node string) ([]Move, error) {
	moves, err := s.st.evacuate(node)
	return moves, wrapf(err, "evacuate node %s", node)
}

// SetReplicaFlags replaces the flags of rd's replica on node verbatim, e.g.
// DELETE or FAILED_DEPLOYMENT to make it stop counting as diskful.
func (s *Sim) SetReplicaFlags(rd, node string, flags ...string) error {
	return wrapf(s.st.setResourceFlags(rd, node, flags), "set flags of %s on %s", rd, node)
}

// SetReplicaHealthy marks rd's replica on node as healthy or broken (a
// broken replica reports promotion score 0, so LINSTOR CSI flags the
// volume abnormal).
func (s *Sim) SetReplicaHealthy(rd, node string, healthy bool) error {
	return wrapf(s.st.setResourceHealth(rd, node, healthy), "set health of %s on %s", rd, node)
}

// SetReplicaInUse marks rd's replica on node as (not) in use (primary).
func (s *Sim) SetReplicaInUse(rd, node string, inUse bool) error {
	return wrapf(s.st.setResourceInUse(rd, node, inUse), "set in-use of %s on %s", rd, node)
}

// SetRDProps sets and deletes resource definition properties.
func (s *Sim) SetRDProps(rd string, set map[string]string, del ...string) error {
	m := client.ResourceDefinitionModify{GenericPropsModify: client.GenericPropsModify{OverrideProps: set, DeleteProps: del}}
	return wrapf(s.st.modifyRD(rd, m), "set props of resource definition %s", rd)
}

// RDProps returns a copy of a resource definition's properties.
func (s *Sim) RDProps(rd string) (map[string]string, error) {
	r, err := s.st.rd(rd)
	if err != nil {
		return nil, wrapf(err, "props of resource definition %s", rd)
	}
	return copyProps(r.props), nil
}

// SetVDProps sets and deletes volume definition properties.
func (s *Sim) SetVDProps(rd string, vnr int32, set map[string]string, del ...string) error {
	m := client.VolumeDefinitionModify{GenericPropsModify: client.GenericPropsModify{OverrideProps: set, DeleteProps: del}}
	return wrapf(s.st.modifyVD(rd, vnr, m), "set props of volume definition %s/%d", rd, vnr)
}

// VDProps returns a copy of a volume definition's properties.
func (s *Sim) VDProps(rd string, vnr int32) (map[string]string, error) {
	r, err := s.st.rd(rd)
	if err != nil {
		return nil, wrapf(err, "props of volume definition %s/%d", rd, vnr)
	}
	i, ok := r.vd(vnr)
	if !ok {
		return nil, wrapf(noVD(rd, vnr), "props of volume definition %s/%d", rd, vnr)
	}
	return copyProps(r.vds[i].props), nil
}

// VolumeExists reports whether resource definition rd exists.
func (s *Sim) VolumeExists(rd string) bool {
	_, err := s.st.rd(rd)
	return err == nil
}

// VolumeCount is the number of resource definitions.
func (s *Sim) VolumeCount() int {
	s.st.rlock()
	defer s.st.mu.RUnlock()
	return len(s.st.rds)
}

// Replica describes one replica, for assertions.
type Replica struct {
	Node    string   `json:"node"`
	Flags   []string `json:"flags,omitempty"`
	Pool    string   `json:"pool"`
	Diskful bool     `json:"diskful"`
	Healthy bool     `json:"healthy"`
	InUse   bool     `json:"inUse"`
}

// Replicas lists rd's replicas in node order.
func (s *Sim) Replicas(rd string) ([]Replica, error) {
	r, err := s.st.rd(rd)
	if err != nil {
		return nil, wrapf(err, "replicas of %s", rd)
	}
	out := make([]Replica, len(r.res))
	for i := range r.res {
		x := &r.res[i]
		out[i] = Replica{Node: x.node, Flags: slices.Clone(x.flags), Pool: x.pool, Diskful: x.diskful(), Healthy: x.healthy, InUse: x.inUse}
	}
	return out, nil
}

// DiskfulNodes lists the nodes holding a live diskful replica of rd (the
// ones that define its accessible topology), sorted.
func (s *Sim) DiskfulNodes(rd string) ([]string, error) {
	r, err := s.st.rd(rd)
	if err != nil {
		return nil, wrapf(err, "diskful nodes of %s", rd)
	}
	var out []string
	for i := range r.res {
		if r.res[i].diskful() && r.res[i].live() {
			out = append(out, r.res[i].node)
		}
	}
	sort.Strings(out)
	return out, nil
}

package linstorsim

import (
	"fmt"
	"slices"
	"sort"
	"time"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

// disklessFlags normalises the flags of a resource to create: any diskless
// flavour implies DISKLESS, and DRBD_DISKLESS unless it is an NVMe
// initiator. It reports whether the resource is diskless.
func disklessFlags(flags []string) (bool, []string) {
	out := slices.Clone(flags)
	diskless := false
	for _, f := range flags {
		switch f {
		case lapiconst.FlagDiskless, lapiconst.FlagDrbdDiskless, lapiconst.FlagTieBreaker, lapiconst.FlagNvmeInitiator:
			diskless = true
		}
	}
	if !diskless {
		return false, out
	}
	if !slices.Contains(out, lapiconst.FlagDiskless) {
		out = append([]string{lapiconst.FlagDiskless}, out...)
	}
	if !slices.Contains(out, lapiconst.FlagNvmeInitiator) && !slices.Contains(out, lapiconst.FlagDrbdDiskless) {
		out = append(out, lapiconst.FlagDrbdDiskless)
	}
	return true, out
}

// pickPool chooses the pool of a diskful replica on node n: want when
// given, else the first of the group's pools the node has, else the node's
// diskful pool with the most free space (ties by name). Caller holds mu.
func (s *state) pickPool(n *nodeRec, want string, groupPools []string) (poolRec, error) {
	if want != "" {
		p, ok := n.pool(want)
		if !ok || p.provider == client.DISKLESS {
			return poolRec{}, errNotFound(lapiconst.FailNotFoundStorPool, "storage pool '%s' not found on node '%s'", want, n.name)
		}
		return p, nil
	}
	for _, g := range groupPools {
		if p, ok := n.pool(g); ok && p.provider != client.DISKLESS {
			return p, nil
		}
	}
	var best poolRec
	found := false
	for _, p := range n.pools {
		if p.provider == client.DISKLESS {
			continue
		}
		if !found || s.freeKiB(n, p) > s.freeKiB(n, best) {
			best, found = p, true
		}
	}
	if !found {
		return poolRec{}, &APIError{Status: 400, RetCode: lapiconst.FailNotFoundDfltStorPool, Message: "node '" + n.name + "' has no diskful storage pool"}
	}
	return best, nil
}

// addResourceLocked places rd on node with the given flags; pool names the
// storage pool of a diskful replica ("" = choose). Caller holds mu and owns
// the rd copy.
func (s *state) addResourceLocked(rd *rdRec, node string, flags []string, pool string, props map[string]string) error {
	n, ok := s.nodes[node]
	if !ok {
		return noNode(node)
	}
	if i, ok := rd.resource(node); ok {
		if rd.res[i].delSeq == 0 {
			return errExists(lapiconst.FailExistsRsc, "resource '%s' already exists on node '%s'", rd.name, node)
		}
		// Being deleted: creating it again undoes that, as in LINSTOR.
		rd.res[i].revive()
		rd.res[i].props = applyProps(rd.res[i].props, props, nil, nil)
		return nil
	}
	diskless, fl := disklessFlags(flags)
	var p poolRec
	if diskless {
		p, _ = n.pool(disklessPool)
	} else {
		var err error
		p, err = s.pickPool(n, pool, s.groupPools(rd))
		if err != nil {
			return err
		}
	}
	res := s.newResource(n, p, fl, time.Now())
	res.props = applyProps(res.props, props, nil, nil)
	rd.addResource(res)
	return nil
}

// groupPools returns the storage pools rd's resource group asks for.
// Caller holds mu.
func (s *state) groupPools(rd *rdRec) []string {
	g, ok := s.rgs[rd.rg]
	if !ok {
		return nil
	}
	if len(g.filter.StoragePoolList) > 0 {
		return g.filter.StoragePoolList
	}
	if g.filter.StoragePool != "" {
		return []string{g.filter.StoragePool}
	}
	return nil
}

func (s *state) createResource(rdName, node string, flags []string, pool string, props map[string]string) error {
	return s.changeRD(rdName, func(rd *rdRec) error {
		return s.addResourceLocked(rd, node, flags, pool, props)
	})
}

func (s *state) deleteResource(rdName, node string, who actor) error {
	err := s.changeRD(rdName, func(rd *rdRec) error {
		i, ok := rd.resource(node)
		if !ok {
			return noResource(rdName, node)
		}
		s.removeReplica(rd, i)
		return nil
	})
	if err != nil {
		return err
	}
	s.dlog.add(Deletion{Kind: DeletedResource, ResourceDefinition: rdName, Node: node, Via: who.via, UserAgent: who.agent})
	return nil
}

// changeResource replaces one resource of rd with a changed copy.
func (s *state) changeResource(rdName, node string, change func(r *resRec) error) error {
	return s.changeRD(rdName, func(rd *rdRec) error {
		i, ok := rd.resource(node)
		if !ok {
			return noResource(rdName, node)
		}
		return change(&rd.res[i])
	})
}

func (s *state) modifyResourceProps(rdName, node string, m client.GenericPropsModify) error {
	return s.changeResource(rdName, node, func(r *resRec) error {
		r.props = applyProps(r.props, m.OverrideProps, m.DeleteProps, m.DeleteNamespaces)
		return nil
	})
}

func (s *state) modifyVolumeProps(rdName, node string, nr int32, m client.GenericPropsModify) error {
	s.lock()
	defer s.mu.Unlock()
	return s.changeRDLocked(rdName, func(rd *rdRec) error {
		if _, ok := rd.vd(nr); !ok {
			return noVD(rdName, nr)
		}
		i, ok := rd.resource(node)
		if !ok {
			return noResource(rdName, node)
		}
		r := &rd.res[i]
		vp := make(map[int32]map[string]string, len(r.volProps)+1)
		for k, v := range r.volProps {
			vp[k] = v
		}
		vp[nr] = applyProps(vp[nr], m.OverrideProps, m.DeleteProps, m.DeleteNamespaces)
		r.volProps = vp
		return nil
	})
}

// makeAvailable gives node access to rd: an existing resource is activated
// (and made diskful on request), otherwise a diskless one is created.
func (s *state) makeAvailable(rdName, node string, diskful bool) error {
	s.lock()
	defer s.mu.Unlock()
	return s.changeRDLocked(rdName, func(rd *rdRec) error {
		i, ok := rd.resource(node)
		if !ok {
			flags := []string{lapiconst.FlagDrbdDiskless}
			if diskful {
				flags = nil
			}
			return s.addResourceLocked(rd, node, flags, "", nil)
		}
		r := &rd.res[i]
		if r.delSeq != 0 {
			r.revive()
		}
		r.flags = slices.DeleteFunc(slices.Clone(r.flags), func(f string) bool { return f == lapiconst.FlagRscInactive })
		if diskful && !r.diskful() {
			p, err := s.pickPool(s.nodes[node], "", s.groupPools(rd))
			if err != nil {
				return err
			}
			r.flags = slices.DeleteFunc(r.flags, func(f string) bool {
				return f == lapiconst.FlagDiskless || f == lapiconst.FlagDrbdDiskless || f == lapiconst.FlagTieBreaker
			})
			r.pool, r.provider = p.name, p.provider
			r.props = applyProps(r.props, map[string]string{"StorPoolName": p.name}, nil, nil)
		}
		return nil
	})
}

// moveReplica moves rd's diskful replica from one node to another, into a
// pool of the same name when the target has one.
func (s *state) moveReplica(rdName, from, to string) error {
	s.lock()
	defer s.mu.Unlock()
	err := s.changeRDLocked(rdName, func(rd *rdRec) error {
		return s.moveLocked(rd, from, to)
	})
	if err != nil {
		return err
	}
	s.dlog.add(Deletion{Kind: DeletedResource, ResourceDefinition: rdName, Node: from, Via: ViaSim})
	return nil
}

// moveLocked does the move on the rd copy. Caller holds mu.
func (s *state) moveLocked(rd *rdRec, from, to string) error {
	i, ok := rd.resource(from)
	if !ok {
		return noResource(rd.name, from)
	}
	src := rd.res[i]
	if !src.diskful() {
		return errInvalid("resource '%s' on node '%s' is diskless, nothing to move", rd.name, from)
	}
	if src.delSeq != 0 {
		return errInvalid("resource '%s' on node '%s' is being deleted, nothing to move", rd.name, from)
	}
	n, ok := s.nodes[to]
	if !ok {
		return noNode(to)
	}
	if j, ok := rd.resource(to); ok {
		if rd.res[j].delSeq == 0 || !rd.res[j].diskful() {
			return errExists(lapiconst.FailExistsRsc, "resource '%s' already exists on node '%s'", rd.name, to)
		}
		// Moving back onto a replica still being deleted keeps it.
		rd.res[j].revive()
		s.removeReplica(rd, i)
		return nil
	}
	want := ""
	if p, ok := n.pool(src.pool); ok && p.provider != client.DISKLESS {
		want = p.name
	}
	p, err := s.pickPool(n, want, s.groupPools(rd))
	if err != nil {
		return err
	}
	s.removeReplica(rd, i)
	res := s.newResource(n, p, slices.DeleteFunc(slices.Clone(src.flags), func(f string) bool {
		return f == lapiconst.FlagDelete || f == lapiconst.FlagFailedDeployment || f == lapiconst.FlagFailedDisconnect
	}), time.Now())
	rd.addResource(res)
	return nil
}

// Move is one replica moved by EvacuateNode.
type Move struct {
	ResourceDefinition string `json:"resourceDefinition"`
	From               string `json:"from"`
	To                 string `json:"to"`
}

// evacuate moves every diskful replica off node. Each target is the
// eligible node (online, not evacuating, not yet holding the RD, with a
// diskful pool) holding the fewest resources, ties by name, so the result
// depends only on the state. The node is flagged EVACUATE.
func (s *state) evacuate(node string) ([]Move, error) {
	s.lock()
	defer s.mu.Unlock()
	src, ok := s.nodes[node]
	if !ok {
		return nil, noNode(node)
	}
	load := map[string]int{}
	var affected []*rdRec
	for _, rd := range s.rds {
		for i := range rd.res {
			load[rd.res[i].node]++
		}
		if i, ok := rd.resource(node); ok && rd.res[i].diskful() && rd.res[i].delSeq == 0 {
			affected = append(affected, rd)
		}
	}
	sort.Slice(affected, func(i, j int) bool { return affected[i].name < affected[j].name })
	targets := s.sortedNodes()

	var moves []Move
	var failed []string
	for _, rd := range affected {
		to := ""
		for _, n := range targets {
			if n.name == node || !eligibleTarget(n) || !hasDiskfulPool(n) {
				continue
			}
			if _, holds := rd.resource(n.name); holds {
				continue
			}
			if to == "" || load[n.name] < load[to] {
				to = n.name
			}
		}
		if to == "" {
			failed = append(failed, rd.name)
			continue
		}
		next := rd.clone()
		if err := s.moveLocked(next, node, to); err != nil {
			failed = append(failed, rd.name)
			continue
		}
		s.putRD(rd, next)
		load[to]++
		load[node]--
		moves = append(moves, Move{ResourceDefinition: rd.name, From: node, To: to})
		s.dlog.add(Deletion{Kind: DeletedResource, ResourceDefinition: rd.name, Node: node, Via: ViaSim})
	}
	flagged := src.clone()
	if !slices.Contains(flagged.flags, lapiconst.FlagEvacuate) {
		flagged.flags = append(flagged.flags, lapiconst.FlagEvacuate)
	}
	s.nodes[node] = flagged
	if len(failed) > 0 {
		return moves, errNoNodes("node '%s': no target for %d resource(s): %v", node, len(failed), failed)
	}
	return moves, nil
}

// eligibleTarget reports whether new replicas may go to n.
func eligibleTarget(n *nodeRec) bool {
	if !n.online || slices.Contains(n.flags, lapiconst.FlagEvicted) || slices.Contains(n.flags, lapiconst.FlagEvacuate) {
		return false
	}
	return n.props[lapiconst.KeyAutoplaceAllowTarget] != "false"
}

func hasDiskfulPool(n *nodeRec) bool {
	for _, p := range n.pools {
		if p.provider != client.DISKLESS {
			return true
		}
	}
	return false
}

// setResourceFlags replaces a resource's flags verbatim.
func (s *state) setResourceFlags(rdName, node string, flags []string) error {
	return s.changeResource(rdName, node, func(r *resRec) error {
		r.flags = slices.Clone(flags)
		return nil
	})
}

func (s *state) setResourceHealth(rdName, node string, healthy bool) error {
	return s.changeResource(rdName, node, func(r *resRec) error {
		r.healthy = healthy
		return nil
	})
}

func (s *state) setResourceInUse(rdName, node string, inUse bool) error {
	return s.changeResource(rdName, node, func(r *resRec) error {
		r.inUse = inUse
		return nil
	})
}

// wrapf adds the object a control error concerns, keeping APIError
// reachable through errors.As.
func wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}

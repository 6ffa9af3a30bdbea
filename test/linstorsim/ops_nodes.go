package linstorsim

import (
	"slices"
	"sort"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

// StoragePool describes a storage pool of a simulated node.
type StoragePool struct {
	Name string `json:"name"`
	// Provider defaults to LVM_THIN.
	Provider client.ProviderKind `json:"provider,omitempty"`
	// TotalKiB defaults to 100 GiB.
	TotalKiB int64 `json:"totalKiB,omitempty"`
}

const defaultPoolKiB = 100 << 20

// actor says who asked for a change, for the deletion log.
type actor struct {
	via   string
	agent string
}

var simActor = actor{via: ViaSim}

func buildPools(pools []StoragePool) ([]poolRec, error) {
	out := []poolRec{{name: disklessPool, provider: client.DISKLESS}}
	for _, p := range pools {
		if p.Name == "" {
			return nil, errInvalid("storage pool without a name")
		}
		if p.Name == disklessPool {
			continue
		}
		rec := poolRec{name: p.Name, provider: p.Provider, totalKiB: p.TotalKiB}
		if rec.provider == "" {
			rec.provider = client.LVM_THIN
		}
		if rec.totalKiB == 0 && rec.provider != client.DISKLESS {
			rec.totalKiB = defaultPoolKiB
		}
		if slices.ContainsFunc(out, func(x poolRec) bool { return x.name == p.Name }) {
			return nil, errExists(lapiconst.FailExistsStorPool, "storage pool '%s' given twice", p.Name)
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// addNode registers a satellite with the given properties and pools.
func (s *state) addNode(name string, props map[string]string, pools []StoragePool) error {
	if name == "" {
		return errInvalid("node without a name")
	}
	recs, err := buildPools(pools)
	if err != nil {
		return err
	}
	s.lock()
	defer s.mu.Unlock()
	if _, ok := s.nodes[name]; ok {
		return errExists(lapiconst.FailExistsNode, "node '%s' already exists", name)
	}
	s.nodes[name] = &nodeRec{
		name:   name,
		props:  copyProps(props),
		online: true,
		pools:  recs,
		uuid:   s.newUUID(),
	}
	return nil
}

// removeNode drops a node and, like `linstor node lost`, every resource on
// it. With force false it refuses while resources remain, like a plain
// `linstor node delete`.
func (s *state) removeNode(name string, force bool, who actor) error {
	s.lock()
	defer s.mu.Unlock()
	if _, ok := s.nodes[name]; !ok {
		return noNode(name)
	}
	var holding []*rdRec
	for _, rd := range s.rds {
		if _, ok := rd.resource(name); ok {
			holding = append(holding, rd)
		}
	}
	if len(holding) > 0 && !force {
		return &APIError{Status: 409, RetCode: lapiconst.FailInUse, Message: "node '" + name + "' still has resources"}
	}
	sort.Slice(holding, func(i, j int) bool { return holding[i].name < holding[j].name })
	for _, rd := range holding {
		next := rd.clone()
		i, _ := next.resource(name)
		next.res = slices.Delete(next.res, i, i+1)
		s.putRD(rd, next)
		s.dlog.add(Deletion{Kind: DeletedResource, ResourceDefinition: rd.name, Node: name, Via: who.via, UserAgent: who.agent})
	}
	for k := range s.used {
		if k.node == name {
			delete(s.used, k)
		}
	}
	delete(s.nodes, name)
	return nil
}

// changeNode replaces a node record with a changed copy.
func (s *state) changeNode(name string, change func(n *nodeRec) error) error {
	s.lock()
	defer s.mu.Unlock()
	n, ok := s.nodes[name]
	if !ok {
		return noNode(name)
	}
	next := n.clone()
	if err := change(next); err != nil {
		return err
	}
	s.nodes[name] = next
	return nil
}

func (s *state) modifyNodeProps(name string, m client.GenericPropsModify) error {
	return s.changeNode(name, func(n *nodeRec) error {
		n.props = applyProps(n.props, m.OverrideProps, m.DeleteProps, m.DeleteNamespaces)
		return nil
	})
}

func (s *state) addPool(name string, p StoragePool) error {
	recs, err := buildPools([]StoragePool{p})
	if err != nil {
		return err
	}
	return s.changeNode(name, func(n *nodeRec) error {
		for _, r := range recs {
			if r.name == disklessPool {
				continue
			}
			if _, ok := n.pool(r.name); ok {
				return errExists(lapiconst.FailExistsStorPool, "storage pool '%s' already exists on node '%s'", r.name, name)
			}
			n.pools = append(n.pools, r)
		}
		sort.Slice(n.pools, func(i, j int) bool { return n.pools[i].name < n.pools[j].name })
		return nil
	})
}

func (s *state) setNodeFlag(name, flag string, on bool) error {
	return s.changeNode(name, func(n *nodeRec) error {
		n.flags = slices.DeleteFunc(n.flags, func(f string) bool { return f == flag })
		if on {
			n.flags = append(n.flags, flag)
		}
		return nil
	})
}

func (s *state) node(name string) (*nodeRec, error) {
	s.rlock()
	defer s.mu.RUnlock()
	n, ok := s.nodes[name]
	if !ok {
		return nil, noNode(name)
	}
	return n, nil
}

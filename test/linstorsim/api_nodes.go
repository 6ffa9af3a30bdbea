package linstorsim

import (
	"net/http"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

// REST handlers for nodes and storage pools.

func (s *Sim) listNodes(w http.ResponseWriter, r *http.Request) error {
	lq, err := parseListQuery(r.URL.Query())
	if err != nil {
		return err
	}
	s.st.rlock()
	nodes := s.st.sortedNodes()
	s.st.mu.RUnlock()
	var keep []*nodeRec
	for _, n := range nodes {
		if in(lq.nodes, n.name) && lq.propsMatch(n.props) {
			keep = append(keep, n)
		}
	}
	start, end := lq.page(len(keep))
	keep = thin(keep[start:end], partialOf(r))
	items := make([][]byte, len(keep))
	for i, n := range keep {
		items[i] = mustJSON(nodeToAPI(n))
	}
	return writeArray(w, items)
}

func (s *Sim) getNode(w http.ResponseWriter, r *http.Request) error {
	n, err := s.st.node(r.PathValue("node"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, nodeToAPI(n))
}

func (s *Sim) createNode(w http.ResponseWriter, r *http.Request) error {
	var n client.Node
	if err := readJSON(r, &n); err != nil {
		return err
	}
	if err := s.st.addNode(n.Name, n.Props, nil); err != nil {
		return err
	}
	return writeRC(w, http.StatusCreated, lapiconst.Created, map[string]string{"Node": n.Name}, "New node '%s' registered.", n.Name)
}

func (s *Sim) modifyNode(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("node")
	var m client.NodeModify
	if err := readJSON(r, &m); err != nil {
		return err
	}
	if err := s.st.modifyNodeProps(name, m.GenericPropsModify); err != nil {
		return err
	}
	return writeRC(w, http.StatusOK, lapiconst.Modified, map[string]string{"Node": name}, "Node '%s' modified.", name)
}

func (s *Sim) deleteNode(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("node")
	if err := s.st.removeNode(name, false, requester(r)); err != nil {
		return err
	}
	return writeRC(w, http.StatusOK, lapiconst.Deleted, map[string]string{"Node": name}, "Node '%s' deleted.", name)
}

func (s *Sim) lostNode(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("node")
	if err := s.st.removeNode(name, true, requester(r)); err != nil {
		return err
	}
	return writeRC(w, http.StatusOK, lapiconst.Deleted, map[string]string{"Node": name}, "Node '%s' and its resources deleted.", name)
}

func (s *Sim) evacuateNode(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("node")
	moves, err := s.st.evacuate(name)
	if err != nil {
		return err
	}
	return writeRC(w, http.StatusOK, lapiconst.Modified, map[string]string{"Node": name}, "Node '%s' evacuated, %d resource(s) moved.", name, len(moves))
}

// poolItems returns the JSON of every storage pool passing lq, in node then
// pool name order.
func (s *Sim) poolItems(lq listQuery, only string) ([][]byte, error) {
	s.st.rlock()
	defer s.st.mu.RUnlock()
	if only != "" {
		if _, ok := s.st.nodes[only]; !ok {
			return nil, noNode(only)
		}
	}
	var pools []client.StoragePool
	for _, n := range s.st.sortedNodes() {
		if (only != "" && n.name != only) || !in(lq.nodes, n.name) {
			continue
		}
		for _, p := range n.pools {
			if in(lq.pools, p.name) && lq.propsMatch(nil) {
				pools = append(pools, poolToAPI(n, p, s.st.used[poolKey{n.name, p.name}]))
			}
		}
	}
	start, end := lq.page(len(pools))
	pools = pools[start:end]
	items := make([][]byte, len(pools))
	for i := range pools {
		items[i] = mustJSON(pools[i])
	}
	return items, nil
}

func (s *Sim) listPoolView(w http.ResponseWriter, r *http.Request) error {
	lq, err := parseListQuery(r.URL.Query())
	if err != nil {
		return err
	}
	items, err := s.poolItems(lq, "")
	if err != nil {
		return err
	}
	return writeArray(w, thin(items, partialOf(r)))
}

func (s *Sim) listNodePools(w http.ResponseWriter, r *http.Request) error {
	lq, err := parseListQuery(r.URL.Query())
	if err != nil {
		return err
	}
	items, err := s.poolItems(lq, r.PathValue("node"))
	if err != nil {
		return err
	}
	return writeArray(w, items)
}

func (s *Sim) getNodePool(w http.ResponseWriter, r *http.Request) error {
	node, pool := r.PathValue("node"), r.PathValue("pool")
	s.st.rlock()
	defer s.st.mu.RUnlock()
	n, ok := s.st.nodes[node]
	if !ok {
		return noNode(node)
	}
	p, ok := n.pool(pool)
	if !ok {
		return errNotFound(lapiconst.FailNotFoundStorPool, "storage pool '%s' not found on node '%s'", pool, node)
	}
	return writeJSON(w, http.StatusOK, poolToAPI(n, p, s.st.used[poolKey{node, pool}]))
}

func (s *Sim) createNodePool(w http.ResponseWriter, r *http.Request) error {
	node := r.PathValue("node")
	var sp client.StoragePool
	if err := readJSON(r, &sp); err != nil {
		return err
	}
	if err := s.st.addPool(node, StoragePool{Name: sp.StoragePoolName, Provider: sp.ProviderKind, TotalKiB: sp.TotalCapacity}); err != nil {
		return err
	}
	return writeRC(w, http.StatusCreated, lapiconst.Created, map[string]string{"Node": node, "StorPool": sp.StoragePoolName}, "Storage pool '%s' created on node '%s'.", sp.StoragePoolName, node)
}

package linstorsim

import (
	"net/http"
	"strings"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

// REST handlers for resources, their volumes, autoplace and snapshots.

// resourceRef names one resource of a resource definition record.
type resourceRef struct {
	rd *rdRec
	i  int
}

// resources lists every resource passing lq, in resource definition then
// node order; rdName limits it to one definition. The view (rdName "")
// leaves out resources without volumes in realistic mode, as
// linstor-server's does.
func (s *Sim) resources(r *http.Request, lq listQuery, rdName string) ([]resourceRef, error) {
	var rds []*rdRec
	if rdName != "" {
		rd, err := s.st.rd(rdName)
		if err != nil {
			return nil, err
		}
		rds = []*rdRec{rd}
	} else {
		rds = s.st.sortedRDs()
	}
	var refs []resourceRef
	for _, rd := range rds {
		if !in(lq.resources, rd.name) || (rdName == "" && s.opts.Realistic && len(rd.vds) == 0) {
			continue
		}
		for i := range rd.res {
			res := &rd.res[i]
			if in(lq.nodes, res.node) && in(lq.pools, res.pool) && lq.propsMatch(res.props) {
				refs = append(refs, resourceRef{rd, i})
			}
		}
	}
	start, end := lq.page(len(refs))
	return thin(refs[start:end], partialOf(r)), nil
}

// writeResources answers with the resources as client.ResourceWithVolumes:
// their stored JSON, or in realistic mode encoded afresh with this
// request's live state, one at a time.
func (s *Sim) writeResources(w http.ResponseWriter, refs []resourceRef) error {
	lv := s.live()
	buf := &jw{}
	return writeItems(w, len(refs), func(k int) []byte {
		x := refs[k]
		if lv == nil {
			return x.rd.enc.res[x.i]
		}
		buf.b = buf.b[:0]
		writeResource(buf, x.rd, &x.rd.res[x.i], lv.stateOf(x.rd, x.i))
		return buf.b
	})
}

func (s *Sim) resourceView(w http.ResponseWriter, r *http.Request) error {
	return s.listResourcesOf(w, r, "")
}

func (s *Sim) listResources(w http.ResponseWriter, r *http.Request) error {
	return s.listResourcesOf(w, r, r.PathValue("rd"))
}

func (s *Sim) listResourcesOf(w http.ResponseWriter, r *http.Request, rdName string) error {
	lq, err := parseListQuery(r.URL.Query())
	if err != nil {
		return err
	}
	refs, err := s.resources(r, lq, rdName)
	if err != nil {
		return err
	}
	return s.writeResources(w, refs)
}

// oneResource finds a resource and its record.
func (s *Sim) oneResource(r *http.Request) (*rdRec, int, error) {
	rd, err := s.st.rd(r.PathValue("rd"))
	if err != nil {
		return nil, 0, err
	}
	node := r.PathValue("node")
	i, ok := rd.resource(node)
	if !ok {
		return nil, 0, noResource(rd.name, node)
	}
	return rd, i, nil
}

func (s *Sim) getResource(w http.ResponseWriter, r *http.Request) error {
	rd, i, err := s.oneResource(r)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	if lv := s.live(); lv != nil {
		buf := &jw{}
		writeResource(buf, rd, &rd.res[i], lv.stateOf(rd, i))
		_, _ = w.Write(buf.b)
		return nil
	}
	_, _ = w.Write(rd.enc.res[i])
	return nil
}

func (s *Sim) createOneResource(rdName, node string, c client.ResourceCreate) error {
	if c.Resource.Name != "" && c.Resource.Name != rdName {
		return errInvalid("resource name '%s' does not match path '%s'", c.Resource.Name, rdName)
	}
	return s.st.createResource(rdName, node, c.Resource.Flags, c.Resource.Props["StorPoolName"], c.Resource.Props)
}

func (s *Sim) createResource(w http.ResponseWriter, r *http.Request) error {
	rdName, node := r.PathValue("rd"), r.PathValue("node")
	var c client.ResourceCreate
	if err := readJSON(r, &c); err != nil {
		return err
	}
	if err := s.createOneResource(rdName, node, c); err != nil {
		return err
	}
	return writeRC(w, http.StatusCreated, lapiconst.Created, map[string]string{"RscDfn": rdName, "Node": node}, "Resource '%s' created on node '%s'.", rdName, node)
}

// createResources is LINSTOR's list form: POST .../resources with an array.
func (s *Sim) createResources(w http.ResponseWriter, r *http.Request) error {
	rdName := r.PathValue("rd")
	var cs []client.ResourceCreate
	if err := readJSON(r, &cs); err != nil {
		return err
	}
	var nodes []string
	for _, c := range cs {
		if err := s.createOneResource(rdName, c.Resource.NodeName, c); err != nil {
			return err
		}
		nodes = append(nodes, c.Resource.NodeName)
	}
	return writeRC(w, http.StatusCreated, lapiconst.Created, map[string]string{"RscDfn": rdName}, "Resource '%s' created on node(s) %s.", rdName, strings.Join(nodes, ", "))
}

func (s *Sim) modifyResource(w http.ResponseWriter, r *http.Request) error {
	rdName, node := r.PathValue("rd"), r.PathValue("node")
	var m client.GenericPropsModify
	if err := readJSON(r, &m); err != nil {
		return err
	}
	if err := s.st.modifyResourceProps(rdName, node, m); err != nil {
		return err
	}
	return writeRC(w, http.StatusOK, lapiconst.Modified, map[string]string{"RscDfn": rdName, "Node": node}, "Resource '%s' on node '%s' modified.", rdName, node)
}

func (s *Sim) deleteResource(w http.ResponseWriter, r *http.Request) error {
	rdName, node := r.PathValue("rd"), r.PathValue("node")
	if err := s.st.deleteResource(rdName, node, requester(r)); err != nil {
		return err
	}
	return writeRC(w, http.StatusOK, lapiconst.Deleted, map[string]string{"RscDfn": rdName, "Node": node}, "Resource '%s' on node '%s' deleted.", rdName, node)
}

func (s *Sim) listVolumes(w http.ResponseWriter, r *http.Request) error {
	rd, i, err := s.oneResource(r)
	if err != nil {
		return err
	}
	vols := resToAPI(rd, &rd.res[i]).Volumes
	items := make([][]byte, len(vols))
	for k := range vols {
		items[k] = mustJSON(vols[k])
	}
	return writeArray(w, items)
}

func (s *Sim) getVolume(w http.ResponseWriter, r *http.Request) error {
	nr, err := volumeNumber(r)
	if err != nil {
		return err
	}
	rd, i, err := s.oneResource(r)
	if err != nil {
		return err
	}
	k, ok := rd.vd(nr)
	if !ok {
		return errNotFound(lapiconst.FailNotFoundVlm, "volume %d of '%s' not found on node '%s'", nr, rd.name, rd.res[i].node)
	}
	return writeJSON(w, http.StatusOK, volumeToAPI(rd, &rd.res[i], &rd.vds[k]))
}

func (s *Sim) modifyVolume(w http.ResponseWriter, r *http.Request) error {
	rdName, node := r.PathValue("rd"), r.PathValue("node")
	nr, err := volumeNumber(r)
	if err != nil {
		return err
	}
	var m client.GenericPropsModify
	if err := readJSON(r, &m); err != nil {
		return err
	}
	if err := s.st.modifyVolumeProps(rdName, node, nr, m); err != nil {
		return err
	}
	return writeRC(w, http.StatusOK, lapiconst.Modified, map[string]string{"RscDfn": rdName, "Node": node}, "Volume %d of '%s' on node '%s' modified.", nr, rdName, node)
}

func (s *Sim) makeAvailable(w http.ResponseWriter, r *http.Request) error {
	rdName, node := r.PathValue("rd"), r.PathValue("node")
	var m client.ResourceMakeAvailable
	if err := readJSON(r, &m); err != nil {
		return err
	}
	if err := s.st.makeAvailable(rdName, node, m.Diskful); err != nil {
		return err
	}
	return writeRC(w, http.StatusOK, lapiconst.Modified, map[string]string{"RscDfn": rdName, "Node": node}, "Resource '%s' is available on node '%s'.", rdName, node)
}

func (s *Sim) autoplace(w http.ResponseWriter, r *http.Request) error {
	rdName := r.PathValue("rd")
	var req client.AutoPlaceRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	placed, err := s.st.autoplace(rdName, req)
	if err != nil {
		return err
	}
	if len(placed) == 0 {
		return writeRC(w, http.StatusOK, lapiconst.InfoNoRscSpawned, map[string]string{"RscDfn": rdName}, "Resource '%s' already has the requested replicas.", rdName)
	}
	return writeRC(w, http.StatusCreated, lapiconst.Created, map[string]string{"RscDfn": rdName}, "Resource '%s' placed on node(s) %s.", rdName, strings.Join(placed, ", "))
}

func (s *Sim) listSnapshots(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.st.rd(r.PathValue("rd")); err != nil {
		return err
	}
	return writeArray(w, nil)
}

func (s *Sim) snapshotView(w http.ResponseWriter, r *http.Request) error {
	return writeArray(w, nil)
}

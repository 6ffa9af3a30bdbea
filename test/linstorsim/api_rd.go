package linstorsim

import (
	"net/http"
	"strconv"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

// REST handlers for resource definitions and volume definitions.

func (s *Sim) listRDs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	lq, err := parseListQuery(q)
	if err != nil {
		return err
	}
	withVD, _ := strconv.ParseBool(q.Get("with_volume_definitions"))
	var keep []*rdRec
	for _, rd := range s.st.sortedRDs() {
		if in(lq.resources, rd.name) && lq.propsMatch(rd.props) {
			keep = append(keep, rd)
		}
	}
	start, end := lq.page(len(keep))
	keep = thin(keep[start:end], partialOf(r))
	items := make([][]byte, len(keep))
	for i, rd := range keep {
		if withVD {
			items[i] = rd.enc.withVD
		} else {
			items[i] = rd.enc.plain
		}
	}
	return writeArray(w, items)
}

func (s *Sim) getRD(w http.ResponseWriter, r *http.Request) error {
	rd, err := s.st.rd(r.PathValue("rd"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(rd.enc.plain)
	return nil
}

func (s *Sim) createRD(w http.ResponseWriter, r *http.Request) error {
	var c client.ResourceDefinitionCreate
	if err := readJSON(r, &c); err != nil {
		return err
	}
	rd := c.ResourceDefinition
	if err := s.st.createRD(rd.Name, rd.ResourceGroupName, rd.Props); err != nil {
		return err
	}
	return writeRC(w, http.StatusCreated, lapiconst.Created, map[string]string{"RscDfn": rd.Name}, "New resource definition '%s' created.", rd.Name)
}

func (s *Sim) modifyRD(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("rd")
	var m client.ResourceDefinitionModify
	if err := readJSON(r, &m); err != nil {
		return err
	}
	if err := s.st.modifyRD(name, m); err != nil {
		return err
	}
	return writeRC(w, http.StatusOK, lapiconst.Modified, map[string]string{"RscDfn": name}, "Resource definition '%s' modified.", name)
}

func (s *Sim) deleteRD(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("rd")
	if err := s.st.deleteRD(name, requester(r)); err != nil {
		return err
	}
	return writeRC(w, http.StatusOK, lapiconst.Deleted, map[string]string{"RscDfn": name}, "Resource definition '%s' deleted.", name)
}

// volumeNumber parses the {vnr} path segment.
func volumeNumber(r *http.Request) (int32, error) {
	v := r.PathValue("vnr")
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < 0 {
		return 0, errInvalid("invalid volume number '%s'", v)
	}
	return int32(n), nil
}

func (s *Sim) listVDs(w http.ResponseWriter, r *http.Request) error {
	rd, err := s.st.rd(r.PathValue("rd"))
	if err != nil {
		return err
	}
	items := make([][]byte, len(rd.vds))
	for i := range rd.vds {
		items[i] = mustJSON(vdToAPI(&rd.vds[i]))
	}
	return writeArray(w, items)
}

func (s *Sim) getVD(w http.ResponseWriter, r *http.Request) error {
	nr, err := volumeNumber(r)
	if err != nil {
		return err
	}
	rd, err := s.st.rd(r.PathValue("rd"))
	if err != nil {
		return err
	}
	i, ok := rd.vd(nr)
	if !ok {
		return noVD(rd.name, nr)
	}
	return writeJSON(w, http.StatusOK, vdToAPI(&rd.vds[i]))
}

func (s *Sim) createVD(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("rd")
	var c client.VolumeDefinitionCreate
	if err := readJSON(r, &c); err != nil {
		return err
	}
	vd := c.VolumeDefinition
	if err := s.st.createVD(name, vd.VolumeNumber, vd.SizeKib, vd.Props); err != nil {
		return err
	}
	return writeRC(w, http.StatusCreated, lapiconst.Created, map[string]string{"RscDfn": name}, "New volume definition of '%s' created.", name)
}

func (s *Sim) modifyVD(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("rd")
	nr, err := volumeNumber(r)
	if err != nil {
		return err
	}
	var m client.VolumeDefinitionModify
	if err := readJSON(r, &m); err != nil {
		return err
	}
	if err := s.st.modifyVD(name, nr, m); err != nil {
		return err
	}
	return writeRC(w, http.StatusOK, lapiconst.Modified, map[string]string{"RscDfn": name, "VlmNr": strconv.Itoa(int(nr))}, "Volume definition %d of '%s' modified.", nr, name)
}

func (s *Sim) deleteVD(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("rd")
	nr, err := volumeNumber(r)
	if err != nil {
		return err
	}
	if err := s.st.deleteVD(name, nr, requester(r)); err != nil {
		return err
	}
	return writeRC(w, http.StatusOK, lapiconst.Deleted, map[string]string{"RscDfn": name, "VlmNr": strconv.Itoa(int(nr))}, "Volume definition %d of '%s' deleted.", nr, name)
}

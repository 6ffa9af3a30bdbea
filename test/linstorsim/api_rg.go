package linstorsim

import (
	"net/http"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

// REST handlers for resource groups, volume groups and spawn.

func (s *Sim) listRGs(w http.ResponseWriter, r *http.Request) error {
	lq, err := parseListQuery(r.URL.Query())
	if err != nil {
		return err
	}
	var items [][]byte
	for _, g := range s.st.sortedRGs() {
		if in(lq.resources, g.name) && lq.propsMatch(g.props) {
			items = append(items, mustJSON(rgToAPI(g)))
		}
	}
	start, end := lq.page(len(items))
	return writeArray(w, items[start:end])
}

func (s *Sim) getRG(w http.ResponseWriter, r *http.Request) error {
	g, err := s.st.rgByName(r.PathValue("rg"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rgToAPI(g))
}

func (s *Sim) createRG(w http.ResponseWriter, r *http.Request) error {
	var g client.ResourceGroup
	if err := readJSON(r, &g); err != nil {
		return err
	}
	if err := s.st.createRG(g); err != nil {
		return err
	}
	return writeRC(w, http.StatusCreated, lapiconst.Created, map[string]string{"RscGrp": g.Name}, "New resource group '%s' created.", g.Name)
}

func (s *Sim) modifyRG(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("rg")
	var m client.ResourceGroupModify
	if err := readJSON(r, &m); err != nil {
		return err
	}
	if err := s.st.modifyRG(name, m); err != nil {
		return err
	}
	return writeRC(w, http.StatusOK, lapiconst.Modified, map[string]string{"RscGrp": name}, "Resource group '%s' modified.", name)
}

func (s *Sim) deleteRG(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("rg")
	if err := s.st.deleteRG(name); err != nil {
		return err
	}
	return writeRC(w, http.StatusOK, lapiconst.Deleted, map[string]string{"RscGrp": name}, "Resource group '%s' deleted.", name)
}

func (s *Sim) listVGs(w http.ResponseWriter, r *http.Request) error {
	g, err := s.st.rgByName(r.PathValue("rg"))
	if err != nil {
		return err
	}
	items := make([][]byte, len(g.vgs))
	for i, nr := range g.vgs {
		items[i] = mustJSON(client.VolumeGroup{VolumeNumber: nr, Uuid: g.uuid})
	}
	return writeArray(w, items)
}

func (s *Sim) createVG(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("rg")
	var vg client.VolumeGroup
	if err := readJSON(r, &vg); err != nil {
		return err
	}
	if err := s.st.addVolumeGroup(name, vg); err != nil {
		return err
	}
	return writeRC(w, http.StatusCreated, lapiconst.Created, map[string]string{"RscGrp": name}, "New volume group %d of '%s' created.", vg.VolumeNumber, name)
}

func (s *Sim) spawn(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("rg")
	var sp client.ResourceGroupSpawn
	if err := readJSON(r, &sp); err != nil {
		return err
	}
	if err := s.st.spawn(name, sp); err != nil {
		return err
	}
	return writeRC(w, http.StatusCreated, lapiconst.Created, map[string]string{"RscGrp": name, "RscDfn": sp.ResourceDefinitionName}, "Resource '%s' spawned from group '%s'.", sp.ResourceDefinitionName, name)
}

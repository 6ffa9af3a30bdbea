package linstorsim

import (
	"slices"
	"time"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

func (s *state) createRG(g client.ResourceGroup) error {
	if !validName.MatchString(g.Name) {
		return errInvalid("invalid resource group name '%s'", g.Name)
	}
	s.lock()
	defer s.mu.Unlock()
	if _, ok := s.rgs[g.Name]; ok {
		return errExists(lapiconst.FailExistsRscGrp, "resource group '%s' already exists", g.Name)
	}
	s.rgs[g.Name] = &rgRec{
		name:        g.Name,
		description: g.Description,
		props:       copyProps(g.Props),
		filter:      g.SelectFilter,
		uuid:        s.newUUID(),
	}
	return nil
}

// modifyRG applies a resource group modify: set select filter fields
// replace the stored ones, as LINSTOR does for non-null fields.
func (s *state) modifyRG(name string, m client.ResourceGroupModify) error {
	s.lock()
	defer s.mu.Unlock()
	g, ok := s.rgs[name]
	if !ok {
		return noRG(name)
	}
	next := *g
	if m.Description != "" {
		next.description = m.Description
	}
	next.props = applyProps(g.props, m.OverrideProps, m.DeleteProps, m.DeleteNamespaces)
	f, o := g.filter, m.SelectFilter
	if o.PlaceCount > 0 {
		f.PlaceCount = o.PlaceCount
	}
	if o.StoragePool != "" {
		f.StoragePool = o.StoragePool
	}
	if o.StoragePoolList != nil {
		f.StoragePoolList = slices.Clone(o.StoragePoolList)
	}
	if o.NodeNameList != nil {
		f.NodeNameList = slices.Clone(o.NodeNameList)
	}
	if o.ReplicasOnSame != nil {
		f.ReplicasOnSame = slices.Clone(o.ReplicasOnSame)
	}
	if o.ReplicasOnDifferent != nil {
		f.ReplicasOnDifferent = slices.Clone(o.ReplicasOnDifferent)
	}
	if o.LayerStack != nil {
		f.LayerStack = slices.Clone(o.LayerStack)
	}
	if o.ProviderList != nil {
		f.ProviderList = slices.Clone(o.ProviderList)
	}
	if o.NotPlaceWithRscRegex != "" {
		f.NotPlaceWithRscRegex = o.NotPlaceWithRscRegex
	}
	if o.DisklessOnRemaining {
		f.DisklessOnRemaining = true
	}
	next.filter = f
	s.rgs[name] = &next
	return nil
}

// deleteRG removes a resource group no resource definition uses.
func (s *state) deleteRG(name string) error {
	s.lock()
	defer s.mu.Unlock()
	if _, ok := s.rgs[name]; !ok {
		return noRG(name)
	}
	if name == defaultRG {
		return errInvalid("the default resource group cannot be deleted")
	}
	for _, rd := range s.rds {
		if rd.rg == name {
			return errExists(lapiconst.FailExistsRscDfn, "resource group '%s' is still used by resource definition '%s'", name, rd.name)
		}
	}
	delete(s.rgs, name)
	return nil
}

func (s *state) addVolumeGroup(name string, vg client.VolumeGroup) error {
	s.lock()
	defer s.mu.Unlock()
	g, ok := s.rgs[name]
	if !ok {
		return noRG(name)
	}
	if slices.Contains(g.vgs, vg.VolumeNumber) {
		return errExists(lapiconst.FailExistsVlmGrp, "volume group %d of '%s' already exists", vg.VolumeNumber, name)
	}
	next := *g
	next.vgs = append(slices.Clone(g.vgs), vg.VolumeNumber)
	slices.Sort(next.vgs)
	s.rgs[name] = &next
	return nil
}

func (s *state) rgByName(name string) (*rgRec, error) {
	s.rlock()
	defer s.mu.RUnlock()
	g, ok := s.rgs[name]
	if !ok {
		return nil, noRG(name)
	}
	return g, nil
}

func (s *state) sortedRGs() []*rgRec {
	s.rlock()
	defer s.mu.RUnlock()
	out := make([]*rgRec, 0, len(s.rgs))
	for _, g := range s.rgs {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b *rgRec) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	return out
}

// spawn creates a resource definition with one volume definition per size
// from a resource group and, unless definitions_only, places it; it is all
// or nothing.
func (s *state) spawn(rgName string, sp client.ResourceGroupSpawn) error {
	name := sp.ResourceDefinitionName
	if !validName.MatchString(name) {
		return &APIError{Status: 400, RetCode: lapiconst.FailInvldRscName, Message: "invalid resource definition name '" + name + "'"}
	}
	s.lock()
	defer s.mu.Unlock()
	if _, ok := s.rgs[rgName]; !ok {
		return noRG(rgName)
	}
	if _, ok := s.rds[name]; ok {
		return errExists(lapiconst.FailExistsRscDfn, "resource definition '%s' already exists", name)
	}
	rd := &rdRec{name: name, rg: rgName, props: map[string]string{}, uuid: s.newUUID(), port: s.newPort(), created: time.Now()}
	for i, size := range sp.VolumeSizes {
		if size <= 0 {
			return &APIError{Status: 400, RetCode: lapiconst.FailInvldVlmSize, Message: "volume size must be positive"}
		}
		rd.vds = append(rd.vds, vdRec{nr: int32(i), sizeKiB: uint64(size), props: map[string]string{}, uuid: s.newUUID(), minor: s.newMinor()})
	}
	if !sp.DefinitionsOnly {
		if _, err := s.placeLocked(rd, sp.SelectFilter); err != nil {
			return err
		}
	}
	s.putRD(nil, rd)
	return nil
}

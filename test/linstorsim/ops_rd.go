package linstorsim

import (
	"regexp"
	"slices"
	"sort"
	"time"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

// validName is LINSTOR's rule for resource definition names.
var validName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]{1,47}$`)

// createRD adds an empty resource definition in resource group rg (the
// default group when empty).
func (s *state) createRD(name, rg string, props map[string]string) error {
	if !validName.MatchString(name) {
		return &APIError{Status: 400, RetCode: lapiconst.FailInvldRscName, Message: "invalid resource definition name '" + name + "'"}
	}
	if rg == "" {
		rg = defaultRG
	}
	s.lock()
	defer s.mu.Unlock()
	if _, ok := s.rds[name]; ok {
		return errExists(lapiconst.FailExistsRscDfn, "resource definition '%s' already exists", name)
	}
	if _, ok := s.rgs[rg]; !ok {
		return noRG(rg)
	}
	s.putRD(nil, &rdRec{
		name:    name,
		rg:      rg,
		props:   copyProps(props),
		uuid:    s.newUUID(),
		port:    s.newPort(),
		created: time.Now(),
	})
	return nil
}

// changeRD replaces a resource definition with a changed copy.
func (s *state) changeRD(name string, change func(rd *rdRec) error) error {
	s.lock()
	defer s.mu.Unlock()
	return s.changeRDLocked(name, change)
}

func (s *state) changeRDLocked(name string, change func(rd *rdRec) error) error {
	rd, ok := s.rds[name]
	if !ok {
		return noRD(name)
	}
	next := rd.clone()
	if err := change(next); err != nil {
		return err
	}
	s.putRD(rd, next)
	return nil
}

func (s *state) modifyRD(name string, m client.ResourceDefinitionModify) error {
	return s.changeRD(name, func(rd *rdRec) error {
		if m.ResourceGroup != "" {
			if _, ok := s.rgs[m.ResourceGroup]; !ok {
				return noRG(m.ResourceGroup)
			}
			rd.rg = m.ResourceGroup
		}
		rd.props = applyProps(rd.props, m.OverrideProps, m.DeleteProps, m.DeleteNamespaces)
		return nil
	})
}

// deleteRD removes a resource definition with all its resources.
func (s *state) deleteRD(name string, who actor) error {
	s.lock()
	defer s.mu.Unlock()
	rd, ok := s.rds[name]
	if !ok {
		return noRD(name)
	}
	s.removeRD(rd)
	for _, res := range rd.res {
		s.dlog.add(Deletion{Kind: DeletedResource, ResourceDefinition: name, Node: res.node, Via: who.via, UserAgent: who.agent})
	}
	s.dlog.add(Deletion{Kind: DeletedResourceDefinition, ResourceDefinition: name, Via: who.via, UserAgent: who.agent})
	return nil
}

// createVD adds a volume definition; nr nil takes the lowest free number.
func (s *state) createVD(rdName string, nr *int32, sizeKiB uint64, props map[string]string) error {
	if sizeKiB == 0 {
		return &APIError{Status: 400, RetCode: lapiconst.FailInvldVlmSize, Message: "volume size must be positive"}
	}
	s.lock()
	defer s.mu.Unlock()
	return s.changeRDLocked(rdName, func(rd *rdRec) error {
		var num int32
		if nr != nil {
			num = *nr
			if _, ok := rd.vd(num); ok {
				return errExists(lapiconst.FailExistsVlmDfn, "volume definition %d of '%s' already exists", num, rdName)
			}
		} else {
			for ; ; num++ {
				if _, ok := rd.vd(num); !ok {
					break
				}
			}
		}
		if num < 0 || num >= 65536 {
			return errInvalid("volume number %d out of range", num)
		}
		rd.vds = append(rd.vds, vdRec{nr: num, sizeKiB: sizeKiB, props: copyProps(props), uuid: s.newUUID(), minor: s.newMinor()})
		sort.Slice(rd.vds, func(i, j int) bool { return rd.vds[i].nr < rd.vds[j].nr })
		return nil
	})
}

// modifyVD changes a volume definition's properties and grows its size;
// LINSTOR refuses to shrink.
func (s *state) modifyVD(rdName string, nr int32, m client.VolumeDefinitionModify) error {
	return s.changeRD(rdName, func(rd *rdRec) error {
		i, ok := rd.vd(nr)
		if !ok {
			return noVD(rdName, nr)
		}
		v := &rd.vds[i]
		if m.SizeKib != 0 {
			if m.SizeKib < v.sizeKiB {
				return &APIError{Status: 400, RetCode: lapiconst.FailInvldVlmSize, Message: "shrinking volumes is not supported"}
			}
			v.sizeKiB = m.SizeKib
		}
		v.props = applyProps(v.props, m.OverrideProps, m.DeleteProps, m.DeleteNamespaces)
		return nil
	})
}

func (s *state) deleteVD(rdName string, nr int32, who actor) error {
	err := s.changeRD(rdName, func(rd *rdRec) error {
		i, ok := rd.vd(nr)
		if !ok {
			return noVD(rdName, nr)
		}
		rd.vds = slices.Delete(rd.vds, i, i+1)
		for j := range rd.res {
			if _, ok := rd.res[j].volProps[nr]; ok {
				vp := make(map[int32]map[string]string, len(rd.res[j].volProps))
				for k, v := range rd.res[j].volProps {
					if k != nr {
						vp[k] = v
					}
				}
				rd.res[j].volProps = vp
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	n := nr
	s.dlog.add(Deletion{Kind: DeletedVolumeDefinition, ResourceDefinition: rdName, VolumeNumber: &n, Via: who.via, UserAgent: who.agent})
	return nil
}

func (s *state) rd(name string) (*rdRec, error) {
	s.rlock()
	defer s.mu.RUnlock()
	rd, ok := s.rds[name]
	if !ok {
		return nil, noRD(name)
	}
	return rd, nil
}

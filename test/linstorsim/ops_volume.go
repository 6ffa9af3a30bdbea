package linstorsim

import (
	"time"

	lapiconst "github.com/LINBIT/golinstor"
)

const defaultVolumeKiB = 1 << 20

// createVolume builds a resource definition with volume definitions and
// placed replicas, and stores it only when every part succeeded.
func (s *state) createVolume(spec VolumeSpec) error {
	if !validName.MatchString(spec.Name) {
		return &APIError{Status: 400, RetCode: lapiconst.FailInvldRscName, Message: "invalid resource definition name '" + spec.Name + "'"}
	}
	rg := spec.ResourceGroup
	if rg == "" {
		rg = defaultRG
	}
	sizes := spec.SizesKiB
	if len(sizes) == 0 {
		sizes = []uint64{defaultVolumeKiB}
	}
	s.lock()
	defer s.mu.Unlock()
	if _, ok := s.rds[spec.Name]; ok {
		return errExists(lapiconst.FailExistsRscDfn, "resource definition '%s' already exists", spec.Name)
	}
	if _, ok := s.rgs[rg]; !ok {
		return noRG(rg)
	}
	rd := &rdRec{
		name:    spec.Name,
		rg:      rg,
		props:   copyProps(spec.Props),
		uuid:    s.newUUID(),
		port:    s.newPort(),
		created: time.Now(),
	}
	for i, size := range sizes {
		if size == 0 {
			return &APIError{Status: 400, RetCode: lapiconst.FailInvldVlmSize, Message: "volume size must be positive"}
		}
		nr := int32(i)
		rd.vds = append(rd.vds, vdRec{nr: nr, sizeKiB: size, props: copyProps(spec.VDProps[nr]), uuid: s.newUUID(), minor: s.newMinor()})
	}
	for nr := range spec.VDProps {
		if _, ok := rd.vd(nr); !ok {
			return noVD(spec.Name, nr)
		}
	}
	kinds := []struct {
		nodes []string
		kind  ReplicaKind
	}{{spec.Diskful, Diskful}, {spec.Diskless, Diskless}, {spec.TieBreaker, TieBreaker}}
	for _, k := range kinds {
		flags, err := k.kind.flags()
		if err != nil {
			return err
		}
		pool := ""
		if k.kind == Diskful {
			pool = spec.Pool
		}
		for _, node := range k.nodes {
			if err := s.addResourceLocked(rd, node, flags, pool, nil); err != nil {
				return err
			}
		}
	}
	s.putRD(nil, rd)
	return nil
}

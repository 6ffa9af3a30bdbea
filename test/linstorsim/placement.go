package linstorsim

import (
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	lapiconst "github.com/LINBIT/golinstor"
	"github.com/LINBIT/golinstor/client"
)

// defaultPlaceCount is LINSTOR's place count when no filter sets one.
const defaultPlaceCount = 2

// mergeFilter lays a request's select filter over the resource group's:
// every field the request sets wins, as in LINSTOR.
func mergeFilter(base, over client.AutoSelectFilter) client.AutoSelectFilter {
	out := base
	out.AdditionalPlaceCount = over.AdditionalPlaceCount
	if over.PlaceCount > 0 {
		out.PlaceCount = over.PlaceCount
	}
	if len(over.NodeNameList) > 0 {
		out.NodeNameList = over.NodeNameList
	}
	if over.StoragePool != "" || len(over.StoragePoolList) > 0 {
		out.StoragePool = over.StoragePool
		out.StoragePoolList = over.StoragePoolList
	}
	if len(over.ReplicasOnSame) > 0 {
		out.ReplicasOnSame = over.ReplicasOnSame
	}
	if len(over.ReplicasOnDifferent) > 0 {
		out.ReplicasOnDifferent = over.ReplicasOnDifferent
	}
	if len(over.NotPlaceWithRsc) > 0 {
		out.NotPlaceWithRsc = over.NotPlaceWithRsc
	}
	if over.NotPlaceWithRscRegex != "" {
		out.NotPlaceWithRscRegex = over.NotPlaceWithRscRegex
	}
	if len(over.ProviderList) > 0 {
		out.ProviderList = over.ProviderList
	}
	out.DisklessOnRemaining = out.DisklessOnRemaining || over.DisklessOnRemaining
	return out
}

// candidate is a node that may take a new diskful replica, with the pool it
// would use.
type candidate struct {
	node *nodeRec
	pool poolRec
	free int64
}

// autoplace adds diskful replicas to rd until the merged filter's place
// count is reached (or AdditionalPlaceCount more), all or nothing. It
// returns the nodes it placed on.
func (s *state) autoplace(rdName string, req client.AutoPlaceRequest) ([]string, error) {
	s.lock()
	defer s.mu.Unlock()
	var placed []string
	err := s.changeRDLocked(rdName, func(rd *rdRec) error {
		f := req.SelectFilter
		f.DisklessOnRemaining = f.DisklessOnRemaining || req.DisklessOnRemaining
		var err error
		placed, err = s.placeLocked(rd, f)
		return err
	})
	return placed, err
}

// placeLocked does the placement on the rd copy. Caller holds mu.
func (s *state) placeLocked(rd *rdRec, req client.AutoSelectFilter) ([]string, error) {
	var base client.AutoSelectFilter
	if g, ok := s.rgs[rd.rg]; ok {
		base = g.filter
	}
	f := mergeFilter(base, req)

	var existing []*nodeRec
	for i := range rd.res {
		if rd.res[i].diskful() && rd.res[i].live() {
			if n, ok := s.nodes[rd.res[i].node]; ok {
				existing = append(existing, n)
			}
		}
	}
	target := int(f.PlaceCount)
	if target <= 0 {
		target = defaultPlaceCount
	}
	if f.AdditionalPlaceCount > 0 {
		target = len(existing) + int(f.AdditionalPlaceCount)
	}
	need := target - len(existing)
	var placed []string
	if need > 0 {
		cands, err := s.candidates(rd, f)
		if err != nil {
			return nil, err
		}
		cands = sameGroup(cands, existing, f.ReplicasOnSame, need)
		chosen := pickDifferent(cands, existing, f.ReplicasOnDifferent, need)
		if len(chosen) < need {
			return nil, errNoNodes("not enough available nodes for '%s': need %d more diskful replica(s), found %d eligible", rd.name, need, len(chosen))
		}
		now := time.Now()
		for _, c := range chosen {
			rd.addResource(s.newResource(c.node, c.pool, nil, now))
			placed = append(placed, c.node.name)
		}
	}
	if f.DisklessOnRemaining {
		now := time.Now()
		for _, n := range s.sortedNodes() {
			if _, holds := rd.resource(n.name); holds || !n.online {
				continue
			}
			p, _ := n.pool(disklessPool)
			rd.addResource(s.newResource(n, p, []string{lapiconst.FlagDiskless, lapiconst.FlagDrbdDiskless}, now))
		}
	}
	return placed, nil
}

// candidates lists the nodes that may take a diskful replica of rd under
// filter f, best first: most free space, then name. Caller holds mu.
func (s *state) candidates(rd *rdRec, f client.AutoSelectFilter) ([]candidate, error) {
	pools := f.StoragePoolList
	if len(pools) == 0 && f.StoragePool != "" {
		pools = []string{f.StoragePool}
	}
	var avoid *regexp.Regexp
	if f.NotPlaceWithRscRegex != "" {
		re, err := regexp.Compile(f.NotPlaceWithRscRegex)
		if err != nil {
			return nil, errInvalid("not_place_with_rsc_regex: %v", err)
		}
		avoid = re
	}
	size := int64(rd.totalSizeKiB())
	var out []candidate
	for _, n := range s.sortedNodes() {
		if !eligibleTarget(n) {
			continue
		}
		if _, holds := rd.resource(n.name); holds {
			continue
		}
		if len(f.NodeNameList) > 0 && !slices.Contains(f.NodeNameList, n.name) {
			continue
		}
		if s.holdsAvoided(n.name, f.NotPlaceWithRsc, avoid) {
			continue
		}
		best, ok := s.bestPool(n, pools, f.ProviderList, size)
		if !ok {
			continue
		}
		out = append(out, candidate{node: n, pool: best, free: s.freeKiB(n, best)})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].free > out[j].free })
	return out, nil
}

// bestPool picks the diskful pool of n (limited to pools and providers when
// given) with the most free space that fits size.
func (s *state) bestPool(n *nodeRec, pools, providers []string, size int64) (poolRec, bool) {
	var best poolRec
	found := false
	for _, p := range n.pools {
		if p.provider == client.DISKLESS {
			continue
		}
		if len(pools) > 0 && !slices.Contains(pools, p.name) {
			continue
		}
		if len(providers) > 0 && !slices.Contains(providers, string(p.provider)) {
			continue
		}
		free := s.freeKiB(n, p)
		if free < size {
			continue
		}
		if !found || free > s.freeKiB(n, best) {
			best, found = p, true
		}
	}
	return best, found
}

// holdsAvoided reports whether node holds a resource named in names or
// matching re. Caller holds mu.
func (s *state) holdsAvoided(node string, names []string, re *regexp.Regexp) bool {
	for _, name := range names {
		if rd, ok := s.rds[name]; ok {
			if _, holds := rd.resource(node); holds {
				return true
			}
		}
	}
	if re == nil {
		return false
	}
	for name, rd := range s.rds {
		if re.MatchString(name) {
			if _, holds := rd.resource(node); holds {
				return true
			}
		}
	}
	return false
}

// propMatch splits a replicas-on-same/different entry: "key" or
// "key=value".
func propMatch(entry string) (key, value string, fixed bool) {
	key, value, fixed = strings.Cut(entry, "=")
	return key, value, fixed
}

// sameGroup keeps the candidates that share every replicas-on-same value
// with the existing replicas; without existing replicas it keeps the first
// group (in candidate order) large enough for need.
func sameGroup(cands []candidate, existing []*nodeRec, keys []string, need int) []candidate {
	if len(keys) == 0 {
		return cands
	}
	tuple := func(n *nodeRec) (string, bool) {
		var b strings.Builder
		for _, e := range keys {
			k, v, fixed := propMatch(e)
			got := n.props[k]
			if fixed && got != v {
				return "", false
			}
			b.WriteString(got)
			b.WriteByte(0)
		}
		return b.String(), true
	}
	groups := map[string][]candidate{}
	var order []string
	for _, c := range cands {
		t, ok := tuple(c.node)
		if !ok {
			continue
		}
		if _, seen := groups[t]; !seen {
			order = append(order, t)
		}
		groups[t] = append(groups[t], c)
	}
	if len(existing) > 0 {
		t, ok := tuple(existing[0])
		if !ok {
			return nil
		}
		return groups[t]
	}
	for _, t := range order {
		if len(groups[t]) >= need {
			return groups[t]
		}
	}
	return nil
}

// pickDifferent takes candidates in order while every replicas-on-different
// key keeps distinct values across existing and chosen replicas.
func pickDifferent(cands []candidate, existing []*nodeRec, keys []string, need int) []candidate {
	taken := make([]map[string]bool, len(keys))
	for i, k := range keys {
		taken[i] = map[string]bool{}
		key, _, _ := propMatch(k)
		for _, n := range existing {
			if v, ok := n.props[key]; ok {
				taken[i][v] = true
			}
		}
	}
	var out []candidate
	for _, c := range cands {
		if len(out) == need {
			break
		}
		clash := false
		for i, k := range keys {
			key, _, _ := propMatch(k)
			if v, ok := c.node.props[key]; ok && taken[i][v] {
				clash = true
				break
			}
		}
		if clash {
			continue
		}
		for i, k := range keys {
			key, _, _ := propMatch(k)
			if v, ok := c.node.props[key]; ok {
				taken[i][v] = true
			}
		}
		out = append(out, c)
	}
	return out
}

package linstorsim

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/LINBIT/golinstor/client"
)

// defaultRG is the resource group LINSTOR always has.
const defaultRG = "DfltRscGrp"

// poolKey names one storage pool of one node.
type poolKey struct{ node, pool string }

// state is the simulated controller's whole database. Every field is guarded
// by mu; the records it points to are immutable (see records.go).
type state struct {
	mu sync.RWMutex

	nodes map[string]*nodeRec
	rgs   map[string]*rgRec
	rds   map[string]*rdRec
	kv    map[string]map[string]string

	// rdOrder lists rds' names sorted while rdOrderOK holds; bulk inserts in
	// name order keep it valid, anything else marks it for a re-sort on the
	// next list.
	rdOrder   []string
	rdOrderOK bool

	// used is the KiB allocated by diskful volumes per storage pool.
	used map[poolKey]int64

	seq       uint64
	nextMinor int32
	nextPort  int32

	// dlog receives every deletion; it has its own lock.
	dlog *deletionLog

	// deleteWindow, when positive, keeps removed replicas listed for that
	// long, flagged as LINSTOR flags them while its satellites take them
	// down (deletewindow.go); pending are those replicas, nextDue the
	// earliest end of a phase among them (unix nanoseconds, 0 when none).
	deleteWindow time.Duration
	pending      []pendingDelete
	delSeq       uint64
	nextDue      atomic.Int64
	// now is the clock of the deletion window (tests set it).
	now func() time.Time
}

func newState(dlog *deletionLog) *state {
	s := &state{
		dlog:      dlog,
		nodes:     map[string]*nodeRec{},
		rgs:       map[string]*rgRec{},
		rds:       map[string]*rdRec{},
		kv:        map[string]map[string]string{},
		used:      map[poolKey]int64{},
		rdOrderOK: true,
		nextMinor: 1000,
		nextPort:  7000,
		now:       time.Now,
	}
	s.rgs[defaultRG] = &rgRec{
		name:   defaultRG,
		props:  map[string]string{},
		filter: client.AutoSelectFilter{PlaceCount: 2},
		uuid:   s.newUUID(),
	}
	return s
}

// newUUID returns a unique, stable-looking identifier. Caller holds mu.
func (s *state) newUUID() string {
	s.seq++
	return fmt.Sprintf("5eed0000-0000-4000-8000-%012x", s.seq)
}

func (s *state) newMinor() int32 {
	m := s.nextMinor
	s.nextMinor++
	return m
}

func (s *state) newPort() int32 {
	p := s.nextPort
	s.nextPort++
	if s.nextPort > 7999 {
		s.nextPort = 7000
	}
	return p
}

// usage returns the KiB each storage pool holds for rd's diskful replicas.
func usage(rd *rdRec) map[poolKey]int64 {
	out := map[poolKey]int64{}
	size := int64(rd.totalSizeKiB())
	for i := range rd.res {
		if rd.res[i].diskful() {
			out[poolKey{rd.res[i].node, rd.res[i].pool}] += size
		}
	}
	return out
}

// putRD stores next in place of prev (nil when new), keeping the pool
// accounting and the name order right. Caller holds mu for writing.
func (s *state) putRD(prev, next *rdRec) {
	if prev != nil {
		for k, v := range usage(prev) {
			s.used[k] -= v
		}
	}
	for k, v := range usage(next) {
		s.used[k] += v
	}
	if prev == nil {
		n := len(s.rdOrder)
		if s.rdOrderOK && (n == 0 || s.rdOrder[n-1] < next.name) {
			s.rdOrder = append(s.rdOrder, next.name)
		} else {
			s.rdOrderOK = false
		}
	}
	s.rds[next.name] = next.seal()
}

// removeRD drops rd and frees its storage. Caller holds mu for writing.
func (s *state) removeRD(rd *rdRec) {
	for k, v := range usage(rd) {
		s.used[k] -= v
	}
	delete(s.rds, rd.name)
	if s.rdOrderOK {
		i := sort.SearchStrings(s.rdOrder, rd.name)
		if i < len(s.rdOrder) && s.rdOrder[i] == rd.name {
			s.rdOrder = append(s.rdOrder[:i], s.rdOrder[i+1:]...)
		}
	}
}

// sortedRDs returns every resource definition in name order. It takes the
// lock itself, upgrading to a write lock only when the order must be rebuilt.
func (s *state) sortedRDs() []*rdRec {
	s.rlock()
	if s.rdOrderOK {
		out := s.collectRDs()
		s.mu.RUnlock()
		return out
	}
	s.mu.RUnlock()

	s.lock()
	defer s.mu.Unlock()
	if !s.rdOrderOK {
		s.rdOrder = s.rdOrder[:0]
		for name := range s.rds {
			s.rdOrder = append(s.rdOrder, name)
		}
		sort.Strings(s.rdOrder)
		s.rdOrderOK = true
	}
	return s.collectRDs()
}

func (s *state) collectRDs() []*rdRec {
	out := make([]*rdRec, len(s.rdOrder))
	for i, name := range s.rdOrder {
		out[i] = s.rds[name]
	}
	return out
}

// sortedNodes returns every node in name order. Caller holds mu.
func (s *state) sortedNodes() []*nodeRec {
	out := make([]*nodeRec, 0, len(s.nodes))
	for _, n := range s.nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// freeKiB is what pool p of node n can still take. Caller holds mu.
func (s *state) freeKiB(n *nodeRec, p poolRec) int64 {
	return p.totalKiB - s.used[poolKey{n.name, p.name}]
}

// newResource builds a resource record for rd on node n. Diskless resources
// go to the diskless pool; diskful ones to pool p. Caller holds mu.
func (s *state) newResource(n *nodeRec, p poolRec, flags []string, now time.Time) resRec {
	return resRec{
		node:     n.name,
		flags:    flags,
		props:    map[string]string{"StorPoolName": p.name},
		pool:     p.name,
		provider: p.provider,
		healthy:  true,
		created:  now,
		uuid:     s.newUUID(),
	}
}

package linstorsim

import (
	"slices"

	"github.com/LINBIT/golinstor/client"
)

// Realistic mode (Options.Realistic) makes the resource lists behave like a
// real linstor-server's (v1.30 to v1.34) where that matters to a client that
// polls them, instead of repeating the same bytes:
//
//   - Every request asks the satellites afresh, as the controller does for
//     allocated sizes: thin volumes in use grow between requests, volumes on
//     an offline node have no allocated size and carry a "No active
//     connection" report stamped with the request time, and the running
//     state (in_use, disk and replication states, DRBD connections,
//     promotion score) is what DRBD says at that moment.
//   - DRBD state moves on its own: a replica now and then resyncs
//     (Inconsistent, SyncTarget with a done percentage; its peers SyncSource),
//     a connection now and then drops (Connecting), a volume's primary comes
//     and goes; some replicas are Outdated or Failed for good.
//   - A removed replica stays listed through LINSTOR's deletion window
//     (deletewindow.go): DRBD_DELETE, then DELETE as well, then gone.
//   - The resource view leaves out resources without volumes (of a resource
//     definition without volume definitions), as linstor-server's view does;
//     the per-definition resource list keeps them.
//
// The values are a function of the replica, a per-request counter and the
// clock, so they differ between requests but a test can reason about them.
// Nothing here changes a resource's name, node or flags (but the deletion
// window's), a node, or a definition: what decides a volume's accessible
// topology stays put while the bytes change.

// DRBD connection and replication states as linstor-server reports them.
const (
	connConnected   = "Connected"
	connConnecting  = "Connecting"
	replEstablished = "Established"
	replOff         = "Off"
	replSyncSource  = "SyncSource"
	replSyncTarget  = "SyncTarget"
	diskUpToDate    = "UpToDate"
	diskOutdated    = "Outdated"
	diskFailed      = "Failed"
	diskResyncing   = "Inconsistent"
)

// How often each thing happens in realistic mode: one replica (or
// connection, or volume) in N, per request for the transient ones.
const (
	outdatedOneIn    = 97  // replicas Outdated for good (never a volume's first)
	failedOneIn      = 211 // replicas Failed for good (never a volume's first)
	resyncOneIn      = 64  // replicas resyncing in a given request
	flapOneIn        = 256 // connections down in a given request
	idleOneIn        = 50  // volumes in use whose primary is away in a request
	inUseOutOf10     = 6   // volumes in use (out of 10)
	growthPerRequest = 64  // a volume in use writes up to 1/N of its size
)

// replicaState is what one answer says about a replica's running state.
type replicaState struct {
	// reported: the satellite reported a state (in_use, disk state).
	reported   bool
	inUse      bool
	score      int32
	mayPromote bool
	disk       string
	// peers are the DRBD connections and replication states, sorted by
	// node; realistic mode only.
	peers []peerState
	// alloc is the allocated KiB of each volume (parallel to rdRec.vds),
	// -1 when unknown.
	alloc []int64
	// reportAt, when set, is when the controller failed to reach the
	// satellite: the volumes carry that report.
	reportAt string
}

// peerState is a replica's DRBD view of one peer.
type peerState struct {
	node, conn, repl string
	done             float64
}

// storedState is a replica's state as the record holds it: what every
// answer shows outside realistic mode.
func storedState(rd *rdRec, res *resRec) *replicaState {
	st := &replicaState{
		reported:   true,
		inUse:      res.inUse,
		score:      promotionScore(res),
		mayPromote: res.healthy && !res.inUse,
		disk:       diskState(res),
		alloc:      make([]int64, len(rd.vds)),
	}
	if res.diskful() {
		for i := range rd.vds {
			st.alloc[i] = int64(rd.vds[i].sizeKiB)
		}
	}
	return st
}

// liveView is one request's look at the satellites in realistic mode.
type liveView struct {
	tick    uint64
	at      string
	offline map[string]bool
}

// live starts a request's liveView; nil outside realistic mode.
func (s *Sim) live() *liveView {
	if !s.opts.Realistic {
		return nil
	}
	lv := &liveView{
		tick:    s.ticks.Add(1),
		at:      s.st.now().UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		offline: map[string]bool{},
	}
	s.st.rlock()
	for name, n := range s.st.nodes {
		if !n.online {
			lv.offline[name] = true
		}
	}
	s.st.mu.RUnlock()
	return lv
}

// stateOf is the state replica i of rd reports: live when lv is set.
func (lv *liveView) stateOf(rd *rdRec, i int) *replicaState {
	if lv == nil {
		return storedState(rd, &rd.res[i])
	}
	res := &rd.res[i]
	st := &replicaState{alloc: make([]int64, len(rd.vds))}
	for j := range rd.vds {
		st.alloc[j] = lv.allocated(rd, i, j)
	}
	if lv.offline[res.node] {
		st.reportAt = lv.at
		return st
	}
	if res.delSeq != 0 {
		// DRBD is being taken down: nothing running to report.
		return st
	}
	st.reported = true
	st.disk = lv.disk(rd, i)
	connected := int32(0)
	for j := range rd.res {
		if j == i {
			continue
		}
		p := &rd.res[j]
		ps := peerState{node: p.node, conn: connConnected, repl: replEstablished}
		switch {
		case p.delSeq != 0 || lv.offline[p.node] || lv.flaps(rd.name, res.node, p.node):
			ps.conn, ps.repl = connConnecting, replOff
		case st.disk == diskResyncing:
			ps.repl, ps.done = replSyncTarget, lv.done(rd.name, res.node)
		case lv.disk(rd, j) == diskResyncing:
			ps.repl, ps.done = replSyncSource, lv.done(rd.name, p.node)
		}
		if ps.conn == connConnected {
			connected++
		}
		st.peers = append(st.peers, ps)
	}
	primary := lv.primary(rd)
	st.inUse = primary == i
	switch st.disk {
	case diskUpToDate:
		st.score = 10100 + connected
	case diskResyncing:
		st.score = 100 + connected
	case diskOutdated, diskFailed:
	default: // diskless: promotable through a connected peer
		if connected > 0 {
			st.score = 1 + connected
		}
	}
	st.mayPromote = st.score > 0 && primary < 0
	return st
}

// disk is replica j's disk state in this request.
func (lv *liveView) disk(rd *rdRec, j int) string {
	res := &rd.res[j]
	if !res.healthy || !res.diskful() {
		return diskState(res)
	}
	k := replicaKey(rd.name, res.node)
	if j != firstDiskful(rd) {
		switch {
		case k%outdatedOneIn == 0:
			return diskOutdated
		case k%failedOneIn == 1:
			return diskFailed
		}
	}
	if mix(k, lv.tick)%resyncOneIn == 0 {
		return diskResyncing
	}
	return diskUpToDate
}

// done is how far a resync of rd on node has come, in percent.
func (lv *liveView) done(rd, node string) float64 {
	return float64(1+mix(replicaKey(rd, node), ^lv.tick)%989) / 10
}

// flaps reports whether the connection between two replicas is down in
// this request.
func (lv *liveView) flaps(rd, a, b string) bool {
	if a > b {
		a, b = b, a
	}
	return mix(replicaKey(rd, a+"\x00"+b), lv.tick)%flapOneIn == 0
}

// primary is the index of the replica in use (DRBD primary), -1 for none:
// one set in use by the test, else, for volumes in use, a healthy diskful
// replica picked by the volume's name, away now and then.
func (lv *liveView) primary(rd *rdRec) int {
	var healthy []int
	for j := range rd.res {
		r := &rd.res[j]
		if r.inUse {
			return j
		}
		if r.diskful() && r.healthy && r.delSeq == 0 {
			healthy = append(healthy, j)
		}
	}
	k := replicaKey(rd.name, "")
	if len(healthy) == 0 || k%10 >= inUseOutOf10 || mix(k, lv.tick)%idleOneIn == 0 {
		return -1
	}
	return healthy[(k>>20)%uint64(len(healthy))]
}

// allocated is what the satellite of replica i reports as allocated for
// volume j: thin volumes are partly filled and grow while in use, thick ones
// are full, diskless ones report their fullest peer's (as linstor-server
// does); -1 when the satellite cannot be asked.
func (lv *liveView) allocated(rd *rdRec, i, j int) int64 {
	res := &rd.res[i]
	if lv.offline[res.node] {
		return -1
	}
	if !res.diskful() {
		most := int64(-1)
		for p := range rd.res {
			if rd.res[p].diskful() {
				most = max(most, lv.allocated(rd, p, j))
			}
		}
		return most
	}
	size := int64(rd.vds[j].sizeKiB)
	switch res.provider {
	case client.LVM_THIN, client.ZFS_THIN, client.FILE_THIN:
	default:
		return size
	}
	k := replicaKey(rd.name, res.node) ^ uint64(rd.vds[j].nr)
	used := size * int64(100+k%800) / 1000
	if lv.primary(rd) >= 0 {
		used += int64(mix(k, lv.tick) % uint64(size/growthPerRequest+1))
	}
	return min(used, size)
}

// firstDiskful is the index of rd's first live diskful replica (-1: none);
// realistic mode never spoils that one's disk for good.
func firstDiskful(rd *rdRec) int {
	return slices.IndexFunc(rd.res, func(r resRec) bool { return r.diskful() && r.live() })
}

// replicaKey is a stable 64-bit FNV-1a hash of a replica's names.
func replicaKey(rd, node string) uint64 {
	h := uint64(14695981039346656037)
	for _, s := range [2]string{rd, node} {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
		h ^= 0xff
		h *= 1099511628211
	}
	return h
}

// mix is splitmix64 of a and b: a well-spread number for a (key, request).
func mix(a, b uint64) uint64 {
	z := a + b*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

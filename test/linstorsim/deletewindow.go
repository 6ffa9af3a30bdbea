package linstorsim

import (
	"slices"
	"time"

	lapiconst "github.com/LINBIT/golinstor"
)

// A real LINSTOR controller does not drop a deleted replica at once. It flags
// the resource and its volumes DRBD_DELETE and asks the satellite to take
// DRBD down; when the satellite has, it adds DELETE and asks it to remove the
// storage; only when that is confirmed is the resource gone. Until then the
// replica is listed, and a create (or make-available) on that node undoes
// the deletion. In realistic mode the simulator does the same, each phase
// taking half of Options.DeleteWindow; otherwise replicas go at once.

// DefaultDeleteWindow is how long a removed replica stays listed in
// realistic mode when Options.DeleteWindow is zero: about what a satellite
// takes to bring DRBD down and remove a thin volume.
const DefaultDeleteWindow = 2 * time.Second

// pendingDelete is a replica in the deletion window.
type pendingDelete struct {
	rd, node string
	seq      uint64 // resRec.delSeq of the replica it concerns
	due      time.Time
}

// removeReplica deletes rd's replica i: at once, or by starting its deletion
// window. A replica already in its window is left as it is. Caller holds mu
// for writing and owns the rd copy.
func (s *state) removeReplica(rd *rdRec, i int) {
	if s.deleteWindow <= 0 {
		rd.res = slices.Delete(rd.res, i, i+1)
		return
	}
	r := &rd.res[i]
	if r.delSeq != 0 {
		return
	}
	s.delSeq++
	r.delSeq = s.delSeq
	r.flags = append(slices.Clone(r.flags), lapiconst.FlagDrbdDelete)
	r.volFlags = []string{lapiconst.FlagDrbdDelete}
	s.pending = append(s.pending, pendingDelete{rd: rd.name, node: r.node, seq: r.delSeq, due: s.now().Add(s.deleteWindow / 2)})
	s.noteDue()
}

// revive undoes a deletion in progress, as creating the resource again does
// in LINSTOR; the pending entry lapses (its seq no longer matches).
func (r *resRec) revive() {
	r.delSeq = 0
	r.flags = slices.DeleteFunc(slices.Clone(r.flags), func(f string) bool {
		return f == lapiconst.FlagDelete || f == lapiconst.FlagDrbdDelete
	})
	r.volFlags = nil
}

// lock takes the state's write lock and settles the deletion window first,
// so every change sees replicas as they are now.
func (s *state) lock() {
	s.mu.Lock()
	s.settleLocked()
}

// rlock takes the state's read lock after settling the deletion window.
func (s *state) rlock() {
	if s.due() {
		s.mu.Lock()
		s.settleLocked()
		s.mu.Unlock()
	}
	s.mu.RLock()
}

// due reports whether some deletion phase has ended.
func (s *state) due() bool {
	d := s.nextDue.Load()
	return d != 0 && s.now().UnixNano() >= d
}

// settleLocked moves every replica whose deletion phase has ended on: from
// DRBD_DELETE to DELETE as well, or out of its resource definition. It is a
// load and a compare when nothing is due. Caller holds mu for writing.
func (s *state) settleLocked() {
	if !s.due() {
		return
	}
	now := s.now()
	keep := s.pending[:0]
	for _, p := range s.pending {
		if now.Before(p.due) {
			keep = append(keep, p)
			continue
		}
		rd, ok := s.rds[p.rd]
		if !ok {
			continue
		}
		i, ok := rd.resource(p.node)
		if !ok || rd.res[i].delSeq != p.seq {
			continue
		}
		next := rd.clone()
		r := &next.res[i]
		if slices.Contains(r.flags, lapiconst.FlagDelete) {
			next.res = slices.Delete(next.res, i, i+1)
		} else {
			// DRBD is down on the satellite; now its storage goes.
			r.flags = append([]string{lapiconst.FlagDelete}, r.flags...)
			r.volFlags = []string{lapiconst.FlagDelete, lapiconst.FlagDrbdDelete}
			p.due = p.due.Add(s.deleteWindow - s.deleteWindow/2)
			keep = append(keep, p)
		}
		s.putRD(rd, next)
	}
	clear(s.pending[len(keep):])
	s.pending = keep
	s.noteDue()
}

// noteDue records the earliest end of a phase. Caller holds mu for writing.
func (s *state) noteDue() {
	var first int64
	for _, p := range s.pending {
		if d := p.due.UnixNano(); first == 0 || d < first {
			first = d
		}
	}
	s.nextDue.Store(first)
}

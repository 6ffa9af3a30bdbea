package linstorsim

import (
	"slices"
	"sync"
	"time"
)

// Deletion kinds recorded in the deletion log.
const (
	DeletedResourceDefinition = "resource-definition"
	DeletedVolumeDefinition   = "volume-definition"
	DeletedResource           = "resource"
)

// Deletion sources: the REST API (a client deleted it) or a simulator
// control (the scenario deleted it).
const (
	ViaAPI = "api"
	ViaSim = "sim"
)

// Deletion is one entry of the deletion log. Tests assert on it that a
// client under test never deleted a volume ("nothing is ever lost").
type Deletion struct {
	Kind               string    `json:"kind"`
	ResourceDefinition string    `json:"resourceDefinition"`
	Node               string    `json:"node,omitempty"`
	VolumeNumber       *int32    `json:"volumeNumber,omitempty"`
	Via                string    `json:"via"`
	UserAgent          string    `json:"userAgent,omitempty"`
	Time               time.Time `json:"time"`
}

// deletionLog is an append-only, concurrency-safe list of deletions.
type deletionLog struct {
	mu      sync.Mutex
	entries []Deletion
}

func (l *deletionLog) add(d Deletion) {
	d.Time = time.Now()
	l.mu.Lock()
	l.entries = append(l.entries, d)
	l.mu.Unlock()
}

func (l *deletionLog) snapshot() []Deletion {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.entries)
}

func (l *deletionLog) reset() {
	l.mu.Lock()
	l.entries = nil
	l.mu.Unlock()
}

// Deletions returns every deletion recorded since start or the last reset,
// oldest first.
func (s *Sim) Deletions() []Deletion {
	return s.dlog.snapshot()
}

// VolumeDeletions returns only deletions that lose data: resource
// definitions and volume definitions (not single replicas).
func (s *Sim) VolumeDeletions() []Deletion {
	var out []Deletion
	for _, d := range s.dlog.snapshot() {
		if d.Kind == DeletedResourceDefinition || d.Kind == DeletedVolumeDefinition {
			out = append(out, d)
		}
	}
	return out
}

// ResetDeletions empties the deletion log.
func (s *Sim) ResetDeletions() {
	s.dlog.reset()
}

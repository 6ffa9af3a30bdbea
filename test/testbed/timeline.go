package testbed

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// Timeline collects what happened, each with the time it happened, from
// several sources (the simulator, watches, the sidecar's log), and prints it
// in order relative to a start.
type Timeline struct {
	start time.Time

	mu      sync.Mutex
	entries []TimelineEntry
}

// TimelineEntry is one thing that happened.
type TimelineEntry struct {
	At   time.Time
	Text string
}

// NewTimeline starts a timeline at start (the +0.0s of the printout).
func NewTimeline(start time.Time) *Timeline { return &Timeline{start: start} }

// Start is the timeline's zero.
func (t *Timeline) Start() time.Time { return t.start }

// Add records an event at a time.
func (t *Timeline) Add(at time.Time, format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.entries = append(t.entries, TimelineEntry{At: at, Text: fmt.Sprintf(format, args...)})
}

// Entries returns the events sorted by time (stable for equal times).
func (t *Timeline) Entries() []TimelineEntry {
	t.mu.Lock()
	out := append([]TimelineEntry(nil), t.entries...)
	t.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// Find returns the first event (in time) whose text contains s.
func (t *Timeline) Find(s string) (TimelineEntry, bool) {
	for _, e := range t.Entries() {
		if strings.Contains(e.Text, s) {
			return e, true
		}
	}
	return TimelineEntry{}, false
}

// Print writes the events as "+1.2s text" lines.
func (t *Timeline) Print(w io.Writer) error {
	for _, e := range t.Entries() {
		if _, err := fmt.Fprintf(w, "%+7.1fs  %s\n", e.At.Sub(t.start).Seconds(), e.Text); err != nil {
			return err
		}
	}
	return nil
}

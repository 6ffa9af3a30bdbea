package linstorsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	lapiconst "github.com/LINBIT/golinstor"
)

// FaultKind names a misbehaviour the simulator can inject into REST answers.
type FaultKind string

// The fault kinds. Status, close and the body faults never run the handler
// or run it and then spoil its answer; delay and partial run it normally.
const (
	// FaultStatus answers with Fault.Status (default 500) and an
	// ApiCallError body, without running the handler.
	FaultStatus FaultKind = "status"
	// FaultDelay waits Fault.Delay, then answers normally.
	FaultDelay FaultKind = "delay"
	// FaultClose drops the connection without any answer.
	FaultClose FaultKind = "close"
	// FaultTruncate runs the handler and sends only the first half of its
	// body.
	FaultTruncate FaultKind = "truncate"
	// FaultInvalidJSON runs the handler and sends a body that is not JSON.
	FaultInvalidJSON FaultKind = "invalid-json"
	// FaultPartial drops Fault.Fraction of the entries of node, storage
	// pool, resource and resource definition lists; it matches list routes
	// only.
	FaultPartial FaultKind = "partial"
)

// Fault is one injected misbehaviour. It applies to requests whose method
// equals Method and whose path starts with PathPrefix (empty = any), to the
// next Count of them or, with Count 0, until cleared. When several faults
// match a request, the oldest wins.
type Fault struct {
	Kind       FaultKind     `json:"kind"`
	Method     string        `json:"method,omitempty"`
	PathPrefix string        `json:"pathPrefix,omitempty"`
	Status     int           `json:"status,omitempty"`
	Delay      time.Duration `json:"-"`
	Fraction   float64       `json:"fraction,omitempty"`
	Count      int           `json:"count,omitempty"`
}

// faultWire is Fault on the wire, with the delay as a Go duration string.
type faultWire struct {
	Kind       FaultKind `json:"kind"`
	Method     string    `json:"method,omitempty"`
	PathPrefix string    `json:"pathPrefix,omitempty"`
	Status     int       `json:"status,omitempty"`
	Delay      string    `json:"delay,omitempty"`
	Fraction   float64   `json:"fraction,omitempty"`
	Count      int       `json:"count,omitempty"`
}

// MarshalJSON writes the delay as a duration string such as "250ms".
func (f Fault) MarshalJSON() ([]byte, error) {
	w := faultWire{Kind: f.Kind, Method: f.Method, PathPrefix: f.PathPrefix, Status: f.Status, Fraction: f.Fraction, Count: f.Count}
	if f.Delay > 0 {
		w.Delay = f.Delay.String()
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the delay as a duration string such as "250ms".
func (f *Fault) UnmarshalJSON(b []byte) error {
	var w faultWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*f = Fault{Kind: w.Kind, Method: w.Method, PathPrefix: w.PathPrefix, Status: w.Status, Fraction: w.Fraction, Count: w.Count}
	if w.Delay != "" {
		d, err := time.ParseDuration(w.Delay)
		if err != nil {
			return fmt.Errorf("fault delay %q: %w", w.Delay, err)
		}
		f.Delay = d
	}
	return nil
}

func (f *Fault) validate() error {
	switch f.Kind {
	case FaultStatus:
		if f.Status == 0 {
			f.Status = http.StatusInternalServerError
		}
		if f.Status < 400 || f.Status > 599 {
			return fmt.Errorf("fault status %d: want 400-599", f.Status)
		}
	case FaultDelay:
		if f.Delay <= 0 {
			return fmt.Errorf("delay fault needs a positive delay")
		}
	case FaultPartial:
		if f.Fraction <= 0 || f.Fraction > 1 {
			return fmt.Errorf("partial fault fraction %v: want (0, 1]", f.Fraction)
		}
	case FaultClose, FaultTruncate, FaultInvalidJSON:
	default:
		return fmt.Errorf("unknown fault kind %q", f.Kind)
	}
	if f.Count < 0 {
		return fmt.Errorf("fault count %d is negative", f.Count)
	}
	f.Method = strings.ToUpper(f.Method)
	return nil
}

// ActiveFault is an injected fault with its bookkeeping.
type ActiveFault struct {
	ID int `json:"id"`
	Fault
	// Remaining is how many more requests it applies to; 0 = until cleared.
	Remaining int `json:"remaining"`
	// Hits counts the requests it applied to.
	Hits int `json:"hits"`
}

// MarshalJSON flattens the fault next to the bookkeeping fields.
func (a ActiveFault) MarshalJSON() ([]byte, error) {
	fb, err := json.Marshal(a.Fault)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(fb, &m); err != nil {
		return nil, err
	}
	m["id"], m["remaining"], m["hits"] = a.ID, a.Remaining, a.Hits
	return json.Marshal(m)
}

// faultSet holds the active faults in injection order.
type faultSet struct {
	mu     sync.Mutex
	active []*ActiveFault
	nextID int
}

func (fs *faultSet) add(f Fault) (int, error) {
	if err := f.validate(); err != nil {
		return 0, err
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.nextID++
	fs.active = append(fs.active, &ActiveFault{ID: fs.nextID, Fault: f, Remaining: f.Count})
	return fs.nextID, nil
}

// take returns the fault for this request, if any, and uses up one of its
// count.
func (fs *faultSet) take(r *http.Request, listRoute bool) (Fault, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for i, a := range fs.active {
		if a.Method != "" && a.Method != r.Method {
			continue
		}
		if !strings.HasPrefix(r.URL.Path, a.PathPrefix) {
			continue
		}
		if a.Kind == FaultPartial && !listRoute {
			continue
		}
		a.Hits++
		if a.Remaining > 0 {
			a.Remaining--
			if a.Remaining == 0 {
				fs.active = append(fs.active[:i:i], fs.active[i+1:]...)
			}
		}
		return a.Fault, true
	}
	return Fault{}, false
}

func (fs *faultSet) list() []ActiveFault {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := make([]ActiveFault, len(fs.active))
	for i, a := range fs.active {
		out[i] = *a
	}
	return out
}

func (fs *faultSet) remove(id int) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for i, a := range fs.active {
		if a.ID == id {
			fs.active = append(fs.active[:i:i], fs.active[i+1:]...)
			return true
		}
	}
	return false
}

func (fs *faultSet) clear() {
	fs.mu.Lock()
	fs.active = nil
	fs.mu.Unlock()
}

// InjectFault activates a fault and returns its id.
func (s *Sim) InjectFault(f Fault) (int, error) {
	id, err := s.faults.add(f)
	if err != nil {
		return 0, fmt.Errorf("inject fault: %w", err)
	}
	return id, nil
}

// ClearFault removes one fault; it reports whether it was still active.
func (s *Sim) ClearFault(id int) bool { return s.faults.remove(id) }

// ClearFaults removes every fault.
func (s *Sim) ClearFaults() { s.faults.clear() }

// Faults lists the active faults in the order they are matched.
func (s *Sim) Faults() []ActiveFault { return s.faults.list() }

type ctxKey int

const partialKey ctxKey = 1

// partialOf is the fraction of list entries to drop for this request.
func partialOf(r *http.Request) float64 {
	f, _ := r.Context().Value(partialKey).(float64)
	return f
}

// serveFaulty runs h for r under fault f.
func serveFaulty(w http.ResponseWriter, r *http.Request, h http.Handler, f Fault) {
	switch f.Kind {
	case FaultStatus:
		writeError(w, &APIError{Status: f.Status, RetCode: lapiconst.FailUnknownError, Message: fmt.Sprintf("linstorsim: injected status %d", f.Status)})
	case FaultDelay:
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
			h.ServeHTTP(w, r)
		case <-r.Context().Done():
		}
	case FaultClose:
		// Makes net/http drop the connection without writing anything.
		panic(http.ErrAbortHandler)
	case FaultPartial:
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), partialKey, f.Fraction)))
	case FaultTruncate, FaultInvalidJSON:
		rec := &recorder{header: http.Header{}, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		body := rec.body.Bytes()
		if f.Kind == FaultTruncate {
			body = body[:len(body)/2]
		} else {
			body = []byte(`{"linstorsim": injected invalid json`)
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.status)
		_, _ = w.Write(body)
	}
}

// recorder buffers a handler's answer so a fault can spoil it.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(status int)      { r.status = status }

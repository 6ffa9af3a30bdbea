package csifake

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// state holds every answer of the fake and what it observed. It outlives
// the gRPC servers of a Server so that a restarted driver answers the same.
type state struct {
	mu         sync.Mutex
	name       string
	version    string
	ready      Readiness
	pluginCaps map[csi.PluginCapability_Service_Type]bool
	ctrlCaps   map[csi.ControllerServiceCapability_RPC_Type]bool
	volumes    map[string]Volume
	capacity   map[string]int64
	delays     map[Method]time.Duration
	errs       map[Method]codes.Code
	calls      map[Method]int
	last       map[Method]proto.Message
}

func (st *state) init(cfg Config) {
	st.name = cfg.DriverName
	if st.name == "" {
		st.name = DefaultDriverName
	}
	st.version = cfg.VendorVersion
	if st.version == "" {
		st.version = DefaultVendorVersion
	}
	st.ready = cfg.Ready
	pcaps := cfg.PluginCapabilities
	if pcaps == nil {
		pcaps = LinstorPluginCapabilities()
	}
	st.pluginCaps = make(map[csi.PluginCapability_Service_Type]bool)
	for _, c := range pcaps {
		st.pluginCaps[c] = true
	}
	ccaps := cfg.ControllerCapabilities
	if ccaps == nil {
		ccaps = LinstorControllerCapabilities()
	}
	st.ctrlCaps = make(map[csi.ControllerServiceCapability_RPC_Type]bool)
	for _, c := range ccaps {
		st.ctrlCaps[c] = true
	}
	st.volumes = make(map[string]Volume)
	st.capacity = make(map[string]int64)
	st.delays = make(map[Method]time.Duration)
	st.errs = make(map[Method]codes.Code)
	st.calls = make(map[Method]int)
	st.last = make(map[Method]proto.Message)
}

// SetDriverInfo changes the name and vendor version GetPluginInfo returns.
// An empty name is sent as is, to test callers that must reject it.
func (st *state) SetDriverInfo(name, version string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.name, st.version = name, version
}

// SetReady changes the Probe answer.
func (st *state) SetReady(r Readiness) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.ready = r
}

// SetPluginCapability advertises (on) or withdraws a plugin service
// capability.
func (st *state) SetPluginCapability(c csi.PluginCapability_Service_Type, on bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.pluginCaps[c] = on
}

// SetControllerCapability advertises (on) or withdraws a controller RPC
// capability. The fake keeps serving the RPC either way: enforcing the
// capability is the caller's job, and tests check that it does.
func (st *state) SetControllerCapability(c csi.ControllerServiceCapability_RPC_Type, on bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.ctrlCaps[c] = on
}

// SetVolume sets the ControllerGetVolume answer for a volume id.
func (st *state) SetVolume(id string, v Volume) {
	v.PublishedNodeIDs = slices.Clone(v.PublishedNodeIDs)
	if v.Condition != nil {
		c := *v.Condition
		v.Condition = &c
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.volumes[id] = v
}

// DeleteVolume forgets a volume id, so ControllerGetVolume answers NotFound.
func (st *state) DeleteVolume(id string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.volumes, id)
}

// SetCapacity sets the GetCapacity answer for requests whose accessible
// topology is exactly segment (nil or empty: requests without topology).
// Unknown segments answer 0, as LINSTOR CSI does for segments without
// storage.
func (st *state) SetCapacity(segment map[string]string, available int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.capacity[segmentKey(segment)] = available
}

// SetDelay makes every call of m wait d before answering, or until the
// caller gives up, to test call timeouts. Zero removes the delay.
func (st *state) SetDelay(m Method, d time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.delays[m] = d
}

// SetError makes every call of m fail with the gRPC code c (after any
// delay). codes.OK removes the injected error.
func (st *state) SetError(m Method, c codes.Code) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.errs[m] = c
}

// Calls reports how many calls of m arrived, whatever their outcome.
func (st *state) Calls(m Method) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.calls[m]
}

// ResetCalls sets every call counter to zero.
func (st *state) ResetCalls() {
	st.mu.Lock()
	defer st.mu.Unlock()
	clear(st.calls)
}

// LastRequest returns a copy of the last request of m that arrived, or nil.
// The concrete type is the CSI request message, e.g.
// *csi.GetCapacityRequest for GetCapacity.
func (st *state) LastRequest(m Method) proto.Message {
	st.mu.Lock()
	defer st.mu.Unlock()
	if r, ok := st.last[m]; ok {
		return proto.Clone(r)
	}
	return nil
}

// enter records a call of m and applies the configured delay and error.
func (st *state) enter(ctx context.Context, m Method, req proto.Message) error {
	st.mu.Lock()
	st.calls[m]++
	st.last[m] = proto.Clone(req)
	delay, code := st.delays[m], st.errs[m]
	st.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-t.C:
		}
	}
	if code != codes.OK {
		return status.Errorf(code, "csifake: injected %s error", code)
	}
	return nil
}

// segmentKey is a canonical string for a topology segment.
func segmentKey(segment map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(segment)) {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(segment[k])
		b.WriteByte('\n')
	}
	return b.String()
}

// sortedTrue returns the keys set to true, in ascending order, so answers
// are deterministic.
func sortedTrue[K cmp.Ordered](m map[K]bool) []K {
	var out []K
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] {
			out = append(out, k)
		}
	}
	return out
}

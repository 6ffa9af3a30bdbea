package main

import (
	"context"
	"errors"
	"sync"
)

// health is what /readyz answers: while the sidecar starts, not ready with
// the reason it cannot go on yet (a configuration it cannot read, a driver
// not up); once started, whatever its check says.
type health struct {
	mu     sync.Mutex
	reason string
	check  func(context.Context) error
}

func newHealth() *health { return &health{reason: "starting"} }

// starting says why the sidecar is not ready yet.
func (h *health) starting(reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reason, h.check = reason, nil
}

// started hands readiness to check.
func (h *health) started(check func(context.Context) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reason, h.check = "", check
}

// ready is nil when the sidecar is ready, else the reason it is not.
func (h *health) ready(ctx context.Context) error {
	h.mu.Lock()
	reason, check := h.reason, h.check
	h.mu.Unlock()
	if check == nil {
		return errors.New(reason)
	}
	return check(ctx)
}

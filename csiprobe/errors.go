package csiprobe

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	// ErrNotSupported means the driver did not advertise the controller
	// capability a call needs, so the call was not made. Callers fall back
	// to another source of truth instead of retrying.
	ErrNotSupported = errors.New("not supported by the CSI driver")

	// ErrNotReady means the driver answered Probe with ready = false. It is
	// transient: the sidecar waits and asks again.
	ErrNotReady = errors.New("CSI driver is not ready")

	// ErrNoTopology means the driver does not advertise
	// VOLUME_ACCESSIBILITY_CONSTRAINTS: its PVs carry no node affinity, so
	// there is nothing for the sidecar to keep in sync.
	ErrNoTopology = errors.New("CSI driver does not advertise VOLUME_ACCESSIBILITY_CONSTRAINTS")

	// ErrNoControllerService means the driver does not advertise
	// CONTROLLER_SERVICE: the sidecar is attached to a node plugin socket,
	// a deployment mistake worth one clear log line.
	ErrNoControllerService = errors.New("CSI driver does not advertise CONTROLLER_SERVICE")

	// ErrEmptyDriverName means GetPluginInfo returned no name; without it
	// the sidecar cannot tell its PVs from others'.
	ErrEmptyDriverName = errors.New("CSI driver reported an empty name")
)

// IsNotReady reports whether err says the driver answered Probe with
// ready = false.
func IsNotReady(err error) bool {
	return errors.Is(err, ErrNotReady)
}

// IsNotSupported reports whether err says a call was skipped because the
// driver lacks the capability.
func IsNotSupported(err error) bool {
	return errors.Is(err, ErrNotSupported)
}

// IsTransient reports whether asking again later may succeed: the driver is
// not ready, not reachable (restarting), too slow, or overloaded. Anything
// else (Unimplemented, InvalidArgument, a missing capability...) will not
// change by retrying and deserves a louder log line.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if IsNotReady(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

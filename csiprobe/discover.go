package csiprobe

import (
	"context"
	"fmt"
	"strings"
)

// Driver is everything the sidecar learns about its driver at startup.
type Driver struct {
	Info
	// Ready is the Probe answer.
	Ready bool
	// Plugin are the plugin service capabilities.
	Plugin PluginCaps
	// Controller are the controller capabilities; zero when the driver has
	// no controller service.
	Controller ControllerCaps
}

// Discover asks the driver for its identity, readiness and capabilities in
// one go. A failed call returns that call's error. When every call
// answered but the driver is unfit to work with, Discover returns the
// complete Driver together with an error joining each reason: ErrNotReady
// (retry later), ErrNoControllerService, ErrNoTopology. Callers test with
// errors.Is / IsNotReady and can log the Driver either way.
func (c *Client) Discover(ctx context.Context) (Driver, error) {
	var d Driver
	var err error
	if d.Info, err = c.DriverInfo(ctx); err != nil {
		return d, err
	}
	if d.Ready, err = c.Probe(ctx); err != nil {
		return d, fmt.Errorf("driver %s: %w", d.Name, err)
	}
	if d.Plugin, err = c.PluginCapabilities(ctx); err != nil {
		return d, fmt.Errorf("driver %s: %w", d.Name, err)
	}
	if d.Plugin.ControllerService {
		if d.Controller, err = c.ControllerCapabilities(ctx); err != nil {
			return d, fmt.Errorf("driver %s: %w", d.Name, err)
		}
	}

	var unfit reasons
	if !d.Ready {
		unfit = append(unfit, ErrNotReady)
	}
	if !d.Plugin.ControllerService {
		unfit = append(unfit, ErrNoControllerService)
	}
	if !d.Plugin.AccessibilityConstraints {
		unfit = append(unfit, ErrNoTopology)
	}
	if len(unfit) > 0 {
		return d, fmt.Errorf("driver %s: %w", d.Name, unfit)
	}
	return d, nil
}

// reasons joins several errors on one line (errors.Join uses newlines,
// which break one-line logs) and still unwraps to each of them.
type reasons []error

func (r reasons) Error() string {
	parts := make([]string, len(r))
	for i, err := range r {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (r reasons) Unwrap() []error { return r }

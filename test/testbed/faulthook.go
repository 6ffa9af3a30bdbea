package testbed

import (
	"context"
	"fmt"
)

// faultKillMsg is the line the sidecar's test-only fault hook
// (sidecar/repair/faulthook_on.go, -tags faulthooks) logs right before it kills
// its own process, with the step and the PV as fields.
const faultKillMsg = "Fault hook: killing the process"

// WaitFaultKill waits until the fault hook killed the sidecar right after
// step and returns the PV whose replace it stopped. The last hook line of
// the log (appended across restarts) must name step.
func (b *Bed) WaitFaultKill(ctx context.Context, step string) (string, error) {
	err := Poll(ctx, "sidecar killed by the fault hook after "+step, func(context.Context) (bool, string) {
		return b.Sidecar.Exited(), "still running"
	})
	if err != nil {
		return "", err
	}
	lines, err := b.SidecarLog(faultKillMsg)
	if err != nil {
		return "", err
	}
	if len(lines) == 0 {
		return "", fmt.Errorf("sidecar exited (%v) without the fault hook's line; log ends:\n%s", b.Sidecar.ExitErr(), b.Sidecar.LogTail(3000))
	}
	last := lines[len(lines)-1]
	if got := last.Fields["step"]; got != step {
		return "", fmt.Errorf("fault hook fired after %q, armed for %q", got, step)
	}
	return last.Fields["pv"], nil
}

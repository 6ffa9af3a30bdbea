package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// startAttempts bounds retries after a port was taken between reservation and bind.
const startAttempts = 3

// pollInterval is how often readiness is re-checked while a component starts.
const pollInterval = 100 * time.Millisecond

// waitFor polls check until it succeeds, p exits (a crash fails at once, with
// the end of its log), or ctx ends.
func waitFor(ctx context.Context, p *Process, what string, check func(context.Context) error) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	var last error
	for {
		last = check(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("waiting for %s: %s exited (%v); log %s ends with:\n%s",
				what, p.Name(), p.ExitErr(), p.LogPath(), p.LogTail(3000))
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v); log %s ends with:\n%s",
				what, ctx.Err(), last, p.LogPath(), p.LogTail(3000))
		case <-t.C:
		}
	}
}

// portConflict tells whether p failed because its port was taken meanwhile.
func portConflict(p *Process) bool {
	return strings.Contains(p.LogTail(20000), "address already in use")
}

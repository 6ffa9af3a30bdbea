package cluster

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// StartTimeout bounds StartT's wait for a ready control plane.
const StartTimeout = 2 * time.Minute

// SkipMissingEnv names the variable that turns missing binaries into a skip;
// otherwise they fail the test, so a broken `make tools` cannot pass silently.
const SkipMissingEnv = "E2E_SKIP_MISSING"

// StartT starts a cluster for t and stops it in t.Cleanup. When the test has
// failed, the end of every component log is printed first.
func StartT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	began := time.Now()
	c, err := Start(ctx, opts)
	if err != nil {
		SkipOrFatal(t, err)
	}
	t.Logf("control plane ready in %v (dir %s)", time.Since(began).Round(time.Millisecond), c.Dir())
	t.Cleanup(func() {
		if t.Failed() {
			LogTails(t, c.Processes())
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop cluster: %v", err)
		}
	})
	return c
}

// SkipOrFatal ends t because of err: a skip when err is a missing binary and
// E2E_SKIP_MISSING=1, a failure otherwise.
func SkipOrFatal(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrMissingBinary) && os.Getenv(SkipMissingEnv) == "1" {
		t.Skipf("skipping: %v", err)
	}
	t.Fatal(err)
}

// LogTails prints the end of each process's log to t, to explain a failure.
func LogTails(t testing.TB, procs []*Process) {
	t.Helper()
	for _, p := range procs {
		t.Logf("--- %s (%s), last lines:\n%s", p.Name(), p.LogPath(), p.LogTail(4000))
	}
}

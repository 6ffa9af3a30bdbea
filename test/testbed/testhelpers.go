package testbed

import (
	"context"
	"testing"
	"time"
)

// TestContext bounds a whole test generously; it ends with the test. Each
// wait inside should have its own, shorter deadline.
func TestContext(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Must fails the test at once on err.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Step logs a scenario step with the time since the test began, so a slow
// run shows where the time went.
func Step(t testing.TB, began time.Time, format string, args ...any) {
	t.Helper()
	t.Logf("[%6.1fs] "+format, append([]any{time.Since(began).Seconds()}, args...)...)
}

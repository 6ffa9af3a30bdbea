package faults

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// Environment knobs of the suite.
const (
	// fullEnv selects the full iteration counts (make test-faults).
	fullEnv = "FAULTS_FULL"
	// raceEnv builds the sidecar under test with -race.
	raceEnv = "FAULTS_RACE"
	// logDirEnv keeps each test's component logs in a directory.
	logDirEnv = "E2E_LOG_DIR"
	// killFileEnv is sidecar.FaultKillFileEnv, spelled out so a renamed
	// constant fails here instead of silently disarming the hook.
	killFileEnv = "SIDECAR_FAULT_KILL_FILE"
)

// sidecarBinary is the sidecar built from this checkout with the fault hook.
var sidecarBinary string

// full reports whether the full counts run.
func full() bool { return os.Getenv(fullEnv) == "1" }

// rounds picks the fast or the full count.
func rounds(fast, fullCount int) int {
	if full() {
		return fullCount
	}
	return fast
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if testing.Short() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "faults-sidecar-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir) //nolint:errcheck // best effort
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if sidecarBinary, err = testbed.BuildSidecarWith(ctx, dir, testbed.BuildOptions{Tags: "faulthooks", Race: os.Getenv(raceEnv) == "1"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	totals.print()
	return code
}

// skipShort skips the suite under -short.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("fault suite: runs a control plane, LINSTOR CSI, the external-provisioner and the sidecar; drop -short (binaries from `make tools`)")
	}
}

// startBed starts a test bed running the fault-hook sidecar. The hook's arm
// file is given to every process of the bed through the environment; only
// the sidecar reads it.
func startBed(t *testing.T, opts testbed.Options) (*testbed.Bed, *killSwitch) {
	t.Helper()
	skipShort(t)
	ks := &killSwitch{path: filepath.Join(t.TempDir(), "kill-at")}
	t.Setenv(killFileEnv, ks.path)
	opts.SidecarBinary = sidecarBinary
	if dir := os.Getenv(logDirEnv); dir != "" {
		opts.LogDir = filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
	}
	return testbed.StartT(t, opts), ks
}

// killSwitch arms the sidecar's fault hook: it SIGKILLs itself right after
// completing the named replace step, and disarms the switch as it does.
type killSwitch struct{ path string }

func (k *killSwitch) arm(t *testing.T, step string) {
	t.Helper()
	must(t, os.WriteFile(k.path, []byte(step+"\n"), 0o600))
}

func (k *killSwitch) armed(t *testing.T) bool {
	t.Helper()
	b, err := os.ReadFile(k.path)
	if os.IsNotExist(err) {
		return false
	}
	must(t, err)
	return strings.TrimSpace(string(b)) != ""
}

// waitTimeout bounds one awaited outcome: generous, so a loaded machine
// does not fail a correct sidecar. Nothing asserts how long anything took.
const waitTimeout = 2 * time.Minute

func within(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, waitTimeout)
}

// tally is what the suite did, summed over its tests and printed at the
// end of the run: the figures docs/reliability.md reports.
type tally struct {
	mu       sync.Mutex
	cases    int
	crashes  int
	repaired int
	lost     int
	faults   int
}

var totals tally

func (s *tally) add(cases, crashes, repaired, lost, faults int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cases += cases
	s.crashes += crashes
	s.repaired += repaired
	s.lost += lost
	s.faults += faults
}

func (s *tally) print() {
	s.mu.Lock()
	defer s.mu.Unlock()
	mode := "fast subset"
	if full() {
		mode = "full counts"
	}
	fmt.Printf("fault suite (%s, %s): cases run %d, crashes injected %d, other faults injected %d, PVs repaired %d, PVs lost %d\n",
		mode, time.Now().UTC().Format(time.RFC3339), s.cases, s.crashes, s.faults, s.repaired, s.lost)
}

// The test bed's helpers under the short names the tests use.
var (
	testContext = testbed.TestContext
	must        = testbed.Must
	step        = testbed.Step
)

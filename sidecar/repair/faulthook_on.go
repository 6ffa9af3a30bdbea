//go:build faulthooks

package repair

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"k8s.io/klog/v2"
)

// FaultHooksCompiled reports whether this binary carries the test-only fault
// hook: true only with -tags faulthooks.
const FaultHooksCompiled = true

// FaultKillFileEnv names a file that arms the fault hook. It holds
// "<step>" or "<step>:<n>": the process kills itself with SIGKILL right after
// the n-th (default first) completion of that replace step. The hook empties
// the file before it kills, so a restarted process runs on unharmed until the
// test arms it again. The file is read at every step, so a test can arm a
// running process.
const FaultKillFileEnv = "SIDECAR_FAULT_KILL_FILE"

var faultHookState struct {
	mu   sync.Mutex
	seen map[Step]int
}

// faultHook kills the process as a crash would, when armed for this step.
func faultHook(step Step, pv string) {
	path := os.Getenv(FaultKillFileEnv)
	if path == "" {
		return
	}
	faultHookState.mu.Lock()
	defer faultHookState.mu.Unlock()
	raw, err := os.ReadFile(path)
	if err != nil {
		return // not armed
	}
	want, n, err := parseFaultArm(strings.TrimSpace(string(raw)))
	if err != nil {
		klog.ErrorS(err, "Fault hook: ignoring arm file", "path", path)
		return
	}
	if want != step {
		return
	}
	if faultHookState.seen == nil {
		faultHookState.seen = map[Step]int{}
	}
	faultHookState.seen[step]++
	if faultHookState.seen[step] < n {
		return
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		klog.ErrorS(err, "Fault hook: cannot disarm; not killing", "path", path)
		return
	}
	klog.InfoS("Fault hook: killing the process", "step", step, "pv", pv, "occurrence", n)
	klog.Flush()
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL cannot be caught; never carry on past it
}

// parseFaultArm reads "<step>[:<n>]"; empty text means not armed.
func parseFaultArm(s string) (Step, int, error) {
	if s == "" {
		return "", 0, nil
	}
	name, count, found := strings.Cut(s, ":")
	n := 1
	if found {
		v, err := strconv.Atoi(count)
		if err != nil || v < 1 {
			return "", 0, fmt.Errorf("fault arm %q: count must be a positive number", s)
		}
		n = v
	}
	return Step(name), n, nil
}

package faults

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// TestProductionBinaryHasNoFaultHook builds the sidecar as `make build`
// does (no build tags) and checks that the fault hook is not in it, while
// the suite's binary (-tags faulthooks) has it: no production sidecar can
// be made to kill itself.
func TestProductionBinaryHasNoFaultHook(t *testing.T) {
	skipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	prod, err := testbed.BuildSidecarWith(ctx, t.TempDir(), testbed.BuildOptions{Release: true})
	must(t, err)
	markers := [][]byte{[]byte(killFileEnv), []byte("Fault hook: killing the process")}
	for path, wantHook := range map[string]bool{prod: false, sidecarBinary: true} {
		bin, err := os.ReadFile(path)
		must(t, err)
		for _, m := range markers {
			if got := bytes.Contains(bin, m); got != wantHook {
				t.Errorf("%s: contains %q = %v, want %v", path, m, got, wantHook)
			}
		}
	}
}

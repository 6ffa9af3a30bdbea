// Package e2e proves the sidecar's user-visible outcomes on a real control
// plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler), next
// to the real LINSTOR CSI driver and CSI external-provisioner, against the
// LINSTOR simulator: see package testbed. Every test skips under -short.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/testbed"
)

// sidecarBinary is built once from this checkout by TestMain, unless
// sidecarBinaryEnv names a binary to test instead.
var sidecarBinary string

const sidecarBinaryEnv = "E2E_SIDECAR_BINARY"

// logDirEnv names a directory where each test keeps its component logs.
const logDirEnv = "E2E_LOG_DIR"

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if testing.Short() {
		return m.Run()
	}
	if bin := os.Getenv(sidecarBinaryEnv); bin != "" {
		sidecarBinary = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "e2e-sidecar-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir) //nolint:errcheck // best effort
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if sidecarBinary, err = testbed.BuildSidecar(ctx, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// skipShort skips end-to-end tests under -short.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: runs a control plane, LINSTOR CSI, the external-provisioner and the sidecar; drop -short (binaries from `make tools`)")
	}
}

// startBed starts a test bed with the freshly built sidecar, unless opts
// name another build of it (the fault hook's).
func startBed(t *testing.T, opts testbed.Options) *testbed.Bed {
	t.Helper()
	skipShort(t)
	if opts.SidecarBinary == "" {
		opts.SidecarBinary = sidecarBinary
	}
	if dir := os.Getenv(logDirEnv); dir != "" {
		opts.LogDir = filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
		// Logs are appended to: start from nothing, so a rerun's log
		// assertions do not count the lines of the run before.
		must(t, os.RemoveAll(opts.LogDir))
	}
	return testbed.StartT(t, opts)
}

// waitTimeout bounds one awaited outcome: generous, so a slow machine
// does not fail a correct sidecar.
const waitTimeout = 90 * time.Second

func within(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, waitTimeout)
}

// The test bed's helpers under the short names the tests use.
var (
	testContext = testbed.TestContext
	must        = testbed.Must
	step        = testbed.Step
)

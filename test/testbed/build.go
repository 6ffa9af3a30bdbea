package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
)

// BuildSidecar builds the sidecar from this checkout into dir and returns
// the binary's path, so tests run the code under test, never a stale
// bin/ binary.
func BuildSidecar(ctx context.Context, dir string) (string, error) {
	root, err := cluster.RepoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, SidecarBinaryName)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/linstor-affinity-sidecar")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the sidecar: %w\n%s", err, msg)
	}
	return out, nil
}

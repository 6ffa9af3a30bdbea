package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/cluster"
)

// BuildOptions shape a sidecar build for tests.
type BuildOptions struct {
	// Tags are Go build tags (space separated), e.g. "faulthooks"; the
	// binary's name then ends in them.
	Tags string
	// Race builds with the race detector (and cgo, which it needs).
	Race bool
	// Release builds as `make build` and the Dockerfile do (-trimpath, -s -w).
	Release bool
}

// BuildSidecar builds the sidecar from this checkout into dir and returns
// the binary's path, so tests run the code under test, never a stale
// bin/ binary.
func BuildSidecar(ctx context.Context, dir string) (string, error) {
	return BuildSidecarWith(ctx, dir, BuildOptions{})
}

// BuildSidecarWith is BuildSidecar with build options.
func BuildSidecarWith(ctx context.Context, dir string, o BuildOptions) (string, error) {
	root, err := cluster.RepoRoot()
	if err != nil {
		return "", err
	}
	name := SidecarBinaryName
	if o.Tags != "" {
		name += "-" + strings.ReplaceAll(o.Tags, " ", "-")
	}
	out := filepath.Join(dir, name)
	args := []string{"build", "-o", out}
	if o.Tags != "" {
		args = append(args, "-tags", o.Tags)
	}
	if o.Release {
		args = append(args, "-trimpath", "-ldflags", "-s -w")
	}
	env := append(os.Environ(), "CGO_ENABLED=0")
	if o.Race {
		args = append(args, "-race")
		env = append(os.Environ(), "CGO_ENABLED=1")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/linstor-affinity-sidecar")...)
	cmd.Dir, cmd.Env = root, env
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the sidecar (%+v): %w\n%s", o, err, msg)
	}
	return out, nil
}

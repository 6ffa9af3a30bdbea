package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// CommandResult is the outcome of one run of the sidecar binary.
type CommandResult struct {
	Stdout, Stderr string
	// ExitCode is the process's exit status.
	ExitCode int
}

// RunSidecarCommand runs the sidecar binary once with a subcommand (e.g.
// "check") and its flags, as an operator would from a laptop: with the CSI
// controller's kubeconfig (inserted right after the subcommand) and, unless
// env is not nil, the simulator in LS_CONTROLLERS (plus the client
// certificate with LinstorTLS). The test runner's own LS_*, POD_* and
// KUBERNETES_* variables are dropped so they cannot leak in. A non-zero exit
// is a result, not an error; the error is for a binary that did not run.
func (b *Bed) RunSidecarCommand(ctx context.Context, env []string, subcommand string, args ...string) (CommandResult, error) {
	if env == nil {
		tlsEnv, err := b.linstorClientEnv()
		if err != nil {
			return CommandResult{}, err
		}
		env = append([]string{"LS_CONTROLLERS=" + b.Sim.URL()}, tlsEnv...)
	}
	all := append([]string{subcommand, "--kubeconfig=" + b.sidecarKubeconfig}, args...)
	cmd := exec.CommandContext(ctx, b.opts.SidecarBinary, all...)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LS_") || strings.HasPrefix(kv, "POD_") || strings.HasPrefix(kv, "KUBERNETES_") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, "KUBERNETES_SERVICE_HOST=")
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := CommandResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.ExitCode = exit.ExitCode()
	case err != nil:
		return res, fmt.Errorf("run %s %s: %w", b.opts.SidecarBinary, subcommand, err)
	}
	return res, nil
}

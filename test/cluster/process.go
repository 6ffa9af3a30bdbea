package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// DefaultStopGrace is how long Stop waits after SIGTERM before it kills.
const DefaultStopGrace = 5 * time.Second

// ProcessSpec describes a peer process. Name labels it in errors and names its
// log file; Path is the executable (a bare name is looked up in BinDir).
type ProcessSpec struct {
	Name string
	Path string
	Args []string
	// Env is appended to the test's own environment; later entries win.
	Env []string
	// Dir is the working directory; empty means the test's.
	Dir string
	// LogPath receives stdout and stderr, appended across restarts. Required.
	LogPath string
	// BinDir resolves a bare Path; empty means DefaultBinDir.
	BinDir string
	// StopGrace bounds the wait between SIGTERM and SIGKILL in Stop;
	// zero means DefaultStopGrace.
	StopGrace time.Duration
}

// Process is a child process that cannot outlive the test: it leads its own
// process group (so Kill reaches anything it forks), it gets SIGKILL if the
// test binary dies (Pdeathsig), and Stop/Kill signal the whole group.
type Process struct {
	spec ProcessSpec
	path string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	stopped bool
}

// StartProcess starts spec and returns once the process runs. ctx only guards
// the start: the process lives until Stop, Kill or the test binary's exit.
func StartProcess(ctx context.Context, spec ProcessSpec) (*Process, error) {
	if spec.Name == "" {
		spec.Name = filepath.Base(spec.Path)
	}
	if spec.LogPath == "" {
		return nil, fmt.Errorf("process %s: no log path", spec.Name)
	}
	binDir := spec.BinDir
	if binDir == "" && filepath.Base(spec.Path) == spec.Path {
		d, err := DefaultBinDir()
		if err != nil {
			return nil, fmt.Errorf("process %s: %w", spec.Name, err)
		}
		binDir = d
	}
	path, err := resolveBinary(binDir, spec.Path)
	if err != nil {
		return nil, fmt.Errorf("process %s: %w", spec.Name, err)
	}
	p := &Process{spec: spec, path: path}
	if err := p.start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// RunProcess is StartProcess for the common case: name is a binary in the
// default bin directory (or a path), its log goes to logPath.
func RunProcess(ctx context.Context, name string, args, env []string, logPath string) (*Process, error) {
	return StartProcess(ctx, ProcessSpec{Name: filepath.Base(name), Path: name, Args: args, Env: env, LogPath: logPath})
}

func (p *Process) start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("process %s: %w", p.spec.Name, err)
	}
	if err := os.MkdirAll(filepath.Dir(p.spec.LogPath), 0o755); err != nil {
		return fmt.Errorf("process %s: log dir: %w", p.spec.Name, err)
	}
	logFile, err := os.OpenFile(p.spec.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("process %s: %w", p.spec.Name, err)
	}
	// The child holds its own descriptor; ours is not needed after Start.
	defer logFile.Close() //nolint:errcheck // write side owned by the child

	cmd := exec.Command(p.path, p.spec.Args...)
	cmd.Env = append(os.Environ(), p.spec.Env...)
	cmd.Dir = p.spec.Dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := spawn(cmd); err != nil {
		return fmt.Errorf("process %s: start %s: %w", p.spec.Name, p.path, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.waitErr, p.stopped = cmd, done, nil, false
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		if p.cmd == cmd {
			p.waitErr = err
		}
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// Name returns the label given in the spec.
func (p *Process) Name() string { return p.spec.Name }

// LogPath returns the file that collects the process's output.
func (p *Process) LogPath() string { return p.spec.LogPath }

// Pid returns the process id of the current run (also its process group id).
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Done is closed when the current run has exited and been reaped.
func (p *Process) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Exited reports whether the current run has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.Done():
		return true
	default:
		return false
	}
}

// ExitErr returns how the current run ended (nil while running or on exit 0).
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Wait blocks until the current run exits or ctx ends and returns its exit error.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.Done():
		return p.ExitErr()
	case <-ctx.Done():
		return fmt.Errorf("process %s: wait: %w", p.spec.Name, ctx.Err())
	}
}

// Signal sends sig to the process's whole group; a finished process is not an error.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	pid := p.Pid()
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("process %s (pgid %d): signal %v: %w", p.spec.Name, pid, sig, err)
	}
	return nil
}

// Kill sends SIGKILL to the group and waits until the process is reaped,
// simulating a crash.
func (p *Process) Kill() error {
	p.markStopped()
	if p.Exited() {
		return nil
	}
	pid := p.Pid()
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.Done()
	reapGroup(pid)
	return nil
}

// Stop asks the group to terminate (SIGTERM), kills it after the grace
// period, and waits for the exit. It is idempotent.
func (p *Process) Stop() error {
	p.markStopped()
	if p.Exited() {
		return nil
	}
	pid := p.Pid()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	grace := p.spec.StopGrace
	if grace <= 0 {
		grace = DefaultStopGrace
	}
	select {
	case <-p.Done():
		reapGroup(pid)
		return nil
	case <-time.After(grace):
	}
	return p.Kill()
}

// reapGroup kills what a just-exited leader left in its group. While any
// member lives the group id cannot be reused, and right after the leader's
// exit an empty group only yields ESRCH, so this never hits a stranger.
func reapGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // ESRCH: nothing was left
}

// Restart stops the current run (gracefully) and starts the same spec
// again, appending to the same log.
func (p *Process) Restart(ctx context.Context) error {
	if err := p.Stop(); err != nil {
		return err
	}
	return p.start(ctx)
}

// Stopped reports whether Stop or Kill ended the current run, telling an
// intended exit apart from a crash.
func (p *Process) Stopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped
}

func (p *Process) markStopped() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
}

// LogTail returns up to the last n bytes of the log, for error messages.
func (p *Process) LogTail(n int) string {
	return fileTail(p.spec.LogPath, n)
}

func fileTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

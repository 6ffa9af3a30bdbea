package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func shellProcess(t *testing.T, script string) *Process {
	t.Helper()
	p, err := StartProcess(context.Background(), ProcessSpec{
		Name:    "sh",
		Path:    "/bin/sh",
		Args:    []string{"-c", script},
		LogPath: filepath.Join(t.TempDir(), "sh.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	return p
}

func logContains(p *Process, s string) func() bool {
	return func() bool { return strings.Contains(p.LogTail(1<<20), s) }
}

func TestProcessKillEndsTheWholeGroup(t *testing.T) {
	p := shellProcess(t, "sleep 300 & sleep 300 & wait")
	pgid := p.Pid()
	eventually(t, 5*time.Second, "the shell and its two children", func() bool {
		return len(liveGroupMembers(t, pgid)) == 3
	})
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() || !p.Stopped() {
		t.Fatalf("after Kill: exited=%v stopped=%v, want both", p.Exited(), p.Stopped())
	}
	eventually(t, 5*time.Second, "no live member in the group", func() bool {
		return len(liveGroupMembers(t, pgid)) == 0
	})
	if err := p.Kill(); err != nil {
		t.Fatalf("second Kill: %v", err)
	}
}

func TestProcessStopIsGracefulAndRestartAppendsToTheLog(t *testing.T) {
	p := shellProcess(t, `trap 'echo got TERM; exit 7' TERM
trap 'echo got USR1' USR1
echo started
while :; do sleep 0.05; done`)
	eventually(t, 5*time.Second, "start", logContains(p, "started"))
	if err := p.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the USR1 trap", logContains(p, "got USR1"))
	if p.Exited() {
		t.Fatal("USR1 ended the process")
	}

	firstPid := p.Pid()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	var exit *exec.ExitError
	if err := p.ExitErr(); !errors.As(err, &exit) || exit.ExitCode() != 7 {
		t.Fatalf("exit after SIGTERM = %v, want the trap's status 7", err)
	}
	if !strings.Contains(p.LogTail(1<<20), "got TERM") {
		t.Fatalf("Stop did not let the TERM trap run; log:\n%s", p.LogTail(1<<20))
	}

	if err := p.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.Pid() == firstPid || p.Exited() || p.Stopped() {
		t.Fatalf("after Restart: pid %d (was %d) exited=%v stopped=%v", p.Pid(), firstPid, p.Exited(), p.Stopped())
	}
	eventually(t, 5*time.Second, "second start in the same log", func() bool {
		return strings.Count(p.LogTail(1<<20), "started") == 2
	})
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestProcessStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	p, err := StartProcess(context.Background(), ProcessSpec{
		Path:      "/bin/sh",
		Args:      []string{"-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"},
		LogPath:   filepath.Join(t.TempDir(), "stubborn.log"),
		StopGrace: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "start", logContains(p, "ready"))
	began := time.Now()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took < 300*time.Millisecond || took > 5*time.Second {
		t.Fatalf("Stop took %v, want the grace period then a kill", took)
	}
	var exit *exec.ExitError
	if err := p.ExitErr(); !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("exit = %v, want SIGKILL", err)
	}
}

func TestStartProcessReportsAMissingBinary(t *testing.T) {
	_, err := StartProcess(context.Background(), ProcessSpec{
		Path:    "no-such-tool",
		BinDir:  t.TempDir(),
		LogPath: filepath.Join(t.TempDir(), "x.log"),
	})
	if !errors.Is(err, ErrMissingBinary) {
		t.Fatalf("err = %v, want ErrMissingBinary", err)
	}
}

// pdeathsigHelperEnv makes the test binary act as a parent that starts a
// child and then dies without cleaning up.
const pdeathsigHelperEnv = "CLUSTER_TEST_PDEATHSIG_HELPER"

func TestProcessDiesWithItsParent(t *testing.T) {
	if os.Getenv(pdeathsigHelperEnv) == "1" {
		p, err := StartProcess(context.Background(), ProcessSpec{
			Path: "/bin/sleep", Args: []string{"300"}, LogPath: os.Getenv("HELPER_LOG"),
		})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(2)
		}
		fmt.Println(p.Pid())
		os.Exit(0) // no Stop, no cleanup: only Pdeathsig can end the child
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestProcessDiesWithItsParent$")
	cmd.Env = append(os.Environ(), pdeathsigHelperEnv+"=1", "HELPER_LOG="+filepath.Join(t.TempDir(), "sleep.log"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v, output %q", err, out)
	}
	line, _, _ := bufio.NewReader(strings.NewReader(string(out))).ReadLine()
	child, err := strconv.Atoi(strings.TrimSpace(string(line)))
	if err != nil {
		t.Fatalf("helper printed %q, want the child's pid", out)
	}
	t.Cleanup(func() {
		if len(liveGroupMembers(t, child)) > 0 {
			_ = syscall.Kill(-child, syscall.SIGKILL) // the test failed; do not leak
		}
	})
	eventually(t, 5*time.Second, fmt.Sprintf("child %d to die with its parent", child), func() bool {
		return len(liveGroupMembers(t, child)) == 0
	})
}

func TestProcessSurvivesTheExitOfTheThreadThatStartedIt(t *testing.T) {
	started := make(chan *Process, 1)
	go func() {
		// Returning while locked makes Go retire this OS thread.
		runtime.LockOSThread()
		p, err := StartProcess(context.Background(), ProcessSpec{
			Path: "/bin/sleep", Args: []string{"300"}, LogPath: filepath.Join(t.TempDir(), "sleep.log"),
		})
		if err != nil {
			t.Error(err)
		}
		started <- p
	}()
	p := <-started
	if p == nil {
		t.FailNow()
	}
	t.Cleanup(func() { _ = p.Kill() })
	time.Sleep(500 * time.Millisecond)
	if p.Exited() {
		t.Fatalf("child died with the thread that started it: %v", p.ExitErr())
	}
}

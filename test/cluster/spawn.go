package cluster

import (
	"os/exec"
	"runtime"
	"sync"
)

// Pdeathsig is delivered when the OS *thread* that forked the child exits,
// not the process (golang/go#27505). Go retires a thread when a goroutine
// locked to it returns, so children are forked from one goroutine that stays
// locked to its thread for the life of the test binary.

type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnOnce     sync.Once
	spawnRequests chan spawnRequest
)

// spawn runs cmd.Start on the long-lived spawner thread.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnRequests = make(chan spawnRequest)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread must outlive every child
			for r := range spawnRequests {
				r.done <- r.cmd.Start()
			}
		}()
	})
	req := spawnRequest{cmd: cmd, done: make(chan error, 1)}
	spawnRequests <- req
	return <-req.done
}

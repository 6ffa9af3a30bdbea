// Command pause is the test node's sandbox ("pause") container: it holds the
// pod's namespaces and does nothing else until it is told to stop. The test
// bed builds it into the image node.PauseImage, since no registry is
// reachable to pull registry.k8s.io/pause from.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	// As PID 1 of its pid namespace it would inherit orphans; reap them.
	signal.Notify(sigs, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}

package main

import (
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// explainSocketDenied says why the driver's socket refuses this process,
// when it does. The gRPC connection only reports "still connecting" and
// then a timeout, and the real pod showed what hides behind it: LINSTOR CSI
// (root) creates the socket srwxr-xr-x root root, connecting needs write
// permission, so a sidecar with another uid gets EACCES forever.
func explainSocketDenied(address string) {
	path := strings.TrimPrefix(address, "unix://")
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		_ = conn.Close()
		return
	}
	if !errors.Is(err, syscall.EACCES) {
		return // not there yet, or another problem the connection reports
	}
	owner, mode := -1, ""
	if fi, serr := os.Stat(path); serr == nil {
		mode = fi.Mode().String()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			owner = int(st.Uid)
		}
	}
	klog.ErrorS(err, "The CSI driver's socket refuses this process: permission denied. Run the sidecar as the driver's user (the shipped patch sets no runAsUser, so both run as root)",
		"socket", path, "mode", mode, "socketOwner", owner, "uid", os.Geteuid())
}

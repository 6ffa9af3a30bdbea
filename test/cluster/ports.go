package cluster

import (
	"fmt"
	"net"
)

// freePorts reserves n distinct TCP ports on 127.0.0.1 by binding them all at
// once and releasing them together. Another process may still grab one before
// our child binds it; startup retries cover that rare race.
func freePorts(n int) ([]int, error) {
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			_ = l.Close() // only held to keep the ports distinct
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("reserve a loopback port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

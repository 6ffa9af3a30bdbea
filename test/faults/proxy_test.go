package faults

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// tcpProxy forwards a loopback port to the LINSTOR simulator. Closing it
// makes the port refuse connections (nothing listens), the "LINSTOR
// controller down" fault the simulator cannot give itself; opening it again
// on the same port is the recovery.
type tcpProxy struct {
	addr   string
	target string

	mu    sync.Mutex
	l     net.Listener
	conns map[net.Conn]bool
}

func newTCPProxy() (*tcpProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &tcpProxy{addr: l.Addr().String(), conns: map[net.Conn]bool{}}
	p.serve(l)
	return p, nil
}

// setTarget names the address to forward to; until then connections are
// accepted and closed at once.
func (p *tcpProxy) setTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

func (p *tcpProxy) serve(l net.Listener) {
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *tcpProxy) forward(c net.Conn) {
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	if target == "" {
		_ = c.Close()
		return
	}
	up, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	if !p.track(c, up) {
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
	}
	go pipe(up, c)
	go pipe(c, up)
	wg.Wait()
	p.untrack(c, up)
}

func (p *tcpProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l == nil { // closed meanwhile
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = true
	}
	return true
}

func (p *tcpProxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		delete(p.conns, c)
	}
}

// refuse stops listening and cuts every open connection.
func (p *tcpProxy) refuse() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l == nil {
		return nil
	}
	err := p.l.Close()
	p.l = nil
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
	return err
}

// accept listens on the same port again.
func (p *tcpProxy) accept() error {
	p.mu.Lock()
	open := p.l != nil
	p.mu.Unlock()
	if open {
		return nil
	}
	var l net.Listener
	var err error
	for range 50 { // the port may linger briefly
		if l, err = net.Listen("tcp", p.addr); err == nil {
			p.serve(l)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.Join(errors.New("proxy: listen again on "+p.addr), err)
}

func (p *tcpProxy) close() { _ = p.refuse() }

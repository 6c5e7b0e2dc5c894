package proxy

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// The commands scripts run on the nodes (`[0 lua]` lines) are shown to the proxy's
// monitors as Redis shows them: while at least one monitor is attached, the proxy runs
// MONITOR on every master and passes on the lines of script commands (the node's
// timestamps), dropping the rest (the proxy shows the commands it receives itself). This
// costs the masters what an attached MONITOR costs a Redis, only while a monitor is
// attached; when the last one leaves the node connections are closed.

// monitorNodeRetry is how long a lost node MONITOR connection waits before it is made again
// (and the masters of the slot map are looked at again).
const monitorNodeRetry = time.Second

var (
	monitorCmd     = resp.AppendCommand(nil, []byte("MONITOR"))
	monitorLuaMark = []byte(" [0 lua] ")
)

// monitorNodeReady bounds how long MONITOR waits for the masters' MONITOR connections
// before it answers.
const monitorNodeReady = time.Second

// startNodeMonitors runs the node MONITOR connections until stop is called; ready is
// closed once the masters' connections monitor (or failed).
func (s *Server) startNodeMonitors() (stop func(), ready <-chan struct{}) {
	ctx, cancel := context.WithCancel(s.ctx)
	m := s.cl.smap.Load()
	var initial sync.WaitGroup
	rdy := make(chan struct{})
	running := map[string]bool{}
	done := make(chan string, 16)
	start := func(n *node, started func()) {
		running[n.addr] = true
		go func() {
			s.monitorNode(ctx, n, started)
			select {
			case done <- n.addr:
			case <-ctx.Done():
			}
		}()
	}
	if m != nil {
		for _, n := range m.masters {
			initial.Add(1)
			start(n, sync.OnceFunc(initial.Done))
		}
	}
	go func() {
		initial.Wait()
		close(rdy)
	}()
	go func() {
		t := time.NewTicker(monitorNodeRetry)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case addr := <-done:
				delete(running, addr)
			case <-t.C:
			}
			if m := s.cl.smap.Load(); m != nil {
				for _, n := range m.masters {
					if !running[n.addr] {
						start(n, nil)
					}
				}
			}
		}
	}()
	return cancel, rdy
}

// started (if not nil) is called once the node answered MONITOR.
func (s *Server) monitorNode(ctx context.Context, n *node, started func()) {
	if started != nil {
		defer started()
	}
	conn, err := n.c.dialReady(ctx, n.addr)
	if err != nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	if _, err := conn.Write(monitorCmd); err != nil {
		return
	}
	rr := resp.NewReader(conn)
	if rep, err := rr.Next(); err != nil || !bytes.HasPrefix(rep, []byte("+OK")) {
		s.log.Warn("MONITOR on a cluster node refused; script commands are not shown to monitors", "node", n.addr)
		return
	}
	if started != nil {
		started()
	}
	for {
		line, err := rr.Next()
		if err != nil {
			return
		}
		if len(line) > 0 && line[0] == '+' && bytes.Contains(line, monitorLuaMark) {
			s.monitorForward(append([]byte(nil), line...))
		}
	}
}

// monitorForward passes one line a node's MONITOR produced to the proxy's monitors.
func (s *Server) monitorForward(line []byte) {
	s.mon.mu.Lock()
	for _, m := range s.mon.subs {
		m.pushMonitor(line)
	}
	s.mon.mu.Unlock()
}

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
// attached; when the last one leaves the node connections are closed. They are service
// connections (svclink.go): the first event loop reads them and filters the lines; no
// goroutine per node.

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

// nodeMonitors is the set of node MONITOR connections while a monitor is attached.
type nodeMonitors struct {
	s      *Server
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	conns  map[string]*monConn // by master address: its connection, being made or monitoring
}

// monConn is one node MONITOR connection.
type monConn struct {
	k *subLink // nil until made (nodeMonitors.mu)
}

// startNodeMonitors runs the node MONITOR connections until stop is called; ready is
// closed once the masters' connections monitor (or failed).
func (s *Server) startNodeMonitors() (stop func(), ready <-chan struct{}) {
	ctx, cancel := context.WithCancel(s.ctx)
	nm := &nodeMonitors{s: s, ctx: ctx, cancel: cancel, conns: map[string]*monConn{}}
	var initial sync.WaitGroup
	rdy := make(chan struct{})
	if m := s.cl.smap.Load(); m != nil {
		nm.mu.Lock()
		for _, n := range m.masters {
			initial.Add(1)
			nm.start(n, initial.Done)
		}
		nm.mu.Unlock()
	}
	go func() {
		initial.Wait()
		close(rdy)
	}()
	go nm.retry()
	return nm.stop, rdy
}

// start makes the MONITOR connection to n (nm.mu held); started (if not nil) is called once
// it monitors, or failed.
func (nm *nodeMonitors) start(n *node, started func()) {
	mc := &monConn{}
	nm.conns[n.addr] = mc
	go nm.open(n, mc, started)
}

// retry makes the connections of masters that have none again, every monitorNodeRetry.
func (nm *nodeMonitors) retry() {
	t := time.NewTicker(monitorNodeRetry)
	defer t.Stop()
	for {
		select {
		case <-nm.ctx.Done():
			return
		case <-t.C:
		}
		m := nm.s.cl.smap.Load()
		if m == nil {
			continue
		}
		nm.mu.Lock()
		if nm.ctx.Err() == nil {
			for _, n := range m.masters {
				if nm.conns[n.addr] == nil {
					nm.start(n, nil)
				}
			}
		}
		nm.mu.Unlock()
	}
}

// stop closes the connections (the last monitor left). It does not wait: the monitors'
// lock may be held, which the loop takes to forward a line.
func (nm *nodeMonitors) stop() {
	nm.cancel()
	nm.mu.Lock()
	defer nm.mu.Unlock()
	for addr, mc := range nm.conns {
		if mc.k != nil {
			mc.k.close()
		}
		delete(nm.conns, addr)
	}
}

// gone forgets mc, n's connection, closed or failed: retry makes another.
func (nm *nodeMonitors) gone(n *node, mc *monConn) {
	nm.mu.Lock()
	if nm.conns[n.addr] == mc {
		delete(nm.conns, n.addr)
	}
	nm.mu.Unlock()
}

// open makes mc, the MONITOR connection to n, and sends MONITOR on it.
func (nm *nodeMonitors) open(n *node, mc *monConn, started func()) {
	s := nm.s
	if started != nil {
		defer started()
	}
	sink := &pushSink{
		msg: func(line []byte) {
			if len(line) > 0 && line[0] == '+' && bytes.Contains(line, monitorLuaMark) {
				s.monitorForward(append([]byte(nil), line...))
			}
		},
		lost: func() { nm.gone(n, mc) },
	}
	k, err := s.openSvcLink(n, sink)
	if err != nil {
		nm.gone(n, mc)
		return
	}
	nm.mu.Lock()
	if nm.conns[n.addr] != mc { // stopped meanwhile
		nm.mu.Unlock()
		k.close()
		return
	}
	mc.k = k
	nm.mu.Unlock()
	ctx, cancel := context.WithTimeout(nm.ctx, svcSetupWait(s))
	defer cancel()
	reps, err := k.roundTrip(ctx, monitorCmd, 1)
	if err != nil || !bytes.HasPrefix(reps[0], []byte("+OK")) {
		if err == nil {
			s.log.Warn("MONITOR on a cluster node refused; script commands are not shown to monitors", "node", n.addr)
		}
		k.close()
		nm.gone(n, mc)
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

package proxy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// directPool hands out dedicated backend connections for commands that may block a
// connection for a long time (BLPOP, XREAD BLOCK, WAIT …), so they never stall the shared
// pipelines. At most limit such connections exist at once over all nodes; idle ones are
// kept for reuse.
type directPool struct {
	c    *cluster
	sem  chan struct{}
	mu   sync.Mutex
	idle map[string][]*directConn
}

type directConn struct {
	conn   net.Conn
	rr     *resp.Reader
	nodeID int64  // the connection's CLIENT ID on the node, once asked (unblock.go)
	onSent func() // called once the next command is written (execDirect), then cleared
}

func newDirectPool(c *cluster, limit int) *directPool {
	return &directPool{c: c, sem: make(chan struct{}, limit), idle: map[string][]*directConn{}}
}

// acquire returns a dedicated connection to n, counting it against the limit until it is
// released.
func (p *directPool) acquire(ctx context.Context, n *node) (*directConn, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrNotSent, ctx.Err())
	default:
		return nil, fmt.Errorf("%w: all %d blocking-connections are in use", ErrNotSent, cap(p.sem))
	}
	dc, err := p.get(ctx, n)
	if err != nil {
		<-p.sem
		return nil, fmt.Errorf("%w: %s unreachable: %v", ErrNotSent, n.addr, err)
	}
	return dc, nil
}

// release gives a connection back; a connection in an unknown state (ok false) is closed.
func (p *directPool) release(n *node, dc *directConn, ok bool) {
	if ok {
		p.put(n.addr, dc)
	} else {
		dc.conn.Close()
	}
	<-p.sem
}

// roundTrip writes cmd on dc and reads replies replies, giving up when ctx ends (the
// connection is then unusable).
func (dc *directConn) roundTrip(ctx context.Context, cmd []byte, replies int) ([][]byte, error) {
	stop := context.AfterFunc(ctx, func() { dc.conn.SetDeadline(time.Now()) })
	defer stop()
	_, err := dc.conn.Write(cmd)
	if f := dc.onSent; f != nil {
		dc.onSent = nil
		if err == nil {
			f()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errFateUnknown, err)
	}
	out := make([][]byte, 0, replies)
	for i := 0; i < replies; i++ {
		rep, err := dc.rr.Next()
		if err != nil {
			return out, fmt.Errorf("%w: %v", errFateUnknown, err)
		}
		out = append(out, rep)
	}
	if ctx.Err() != nil {
		return out, errFateUnknown
	}
	return out, nil
}

// do sends r to n on a dedicated connection and waits for the reply, or until ctx ends
// (the client went away): the connection is then closed, which also unblocks the node.
func (p *directPool) do(ctx context.Context, n *node, r *request) ([]byte, error) {
	return p.doOn(ctx, n, r, nil)
}

// doOn is do, calling before (if not nil) with the connection before r is sent.
func (p *directPool) doOn(ctx context.Context, n *node, r *request, before func(*directConn)) ([]byte, error) {
	dc, err := p.acquire(ctx, n)
	if err != nil {
		return nil, err
	}
	if before != nil {
		before(dc)
	}
	var buf []byte
	want := 1
	if r.asking {
		buf = append(buf, "*1\r\n$6\r\nASKING\r\n"...)
		want = 2
	}
	buf = append(buf, r.raw...)
	reps, err := dc.roundTrip(ctx, buf, want)
	p.release(n, dc, err == nil)
	if err != nil {
		return nil, err
	}
	return reps[want-1], nil
}

func (p *directPool) get(ctx context.Context, n *node) (*directConn, error) {
	p.mu.Lock()
	if l := p.idle[n.addr]; len(l) > 0 {
		dc := l[len(l)-1]
		p.idle[n.addr] = l[:len(l)-1]
		p.mu.Unlock()
		return dc, nil
	}
	p.mu.Unlock()
	conn, err := n.c.dialReady(ctx, n.addr)
	if err != nil {
		return nil, err
	}
	return &directConn{conn: conn, rr: resp.NewReader(conn)}, nil
}

func (p *directPool) put(addr string, dc *directConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle[addr]) >= 16 {
		dc.conn.Close()
		return
	}
	p.idle[addr] = append(p.idle[addr], dc)
}

func (p *directPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, l := range p.idle {
		for _, dc := range l {
			dc.conn.Close()
		}
		delete(p.idle, addr)
	}
}

// blockedCall counts r as a blocked client while it runs (call the result when done).
func (ss *session) blockedCall(r *request) func() {
	if r.info == nil || r.info.Flags&command.Blocking == 0 || len(r.args) == 0 {
		return func() {}
	}
	if name := lowerName(r.args[0]); name == "xread" || name == "xreadgroup" {
		block := false
		for _, a := range r.args[1:] {
			block = block || bytes.EqualFold(a, []byte("block"))
		}
		if !block {
			return func() {}
		}
	}
	ss.s.blocked.Add(1)
	ss.blocking.Store(true)
	return func() { ss.s.blocked.Add(-1); ss.blocking.Store(false) }
}

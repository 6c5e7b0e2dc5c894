package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"time"
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
	conn net.Conn
	br   *bufio.Reader
	rr   *replyReader
}

func newDirectPool(c *cluster, limit int) *directPool {
	return &directPool{c: c, sem: make(chan struct{}, limit), idle: map[string][]*directConn{}}
}

// do sends r to n on a dedicated connection and waits for the reply, or until ctx ends
// (the client went away): the connection is then closed, which also unblocks the node.
func (p *directPool) do(ctx context.Context, n *node, r *request) ([]byte, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrNotSent, ctx.Err())
	default:
		return nil, fmt.Errorf("%w: all %d blocking-connections are in use", ErrNotSent, cap(p.sem))
	}
	defer func() { <-p.sem }()
	dc, err := p.get(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("%w: %s unreachable: %v", ErrNotSent, n.addr, err)
	}
	stop := context.AfterFunc(ctx, func() { dc.conn.SetDeadline(time.Now()) })
	var buf []byte
	if r.asking {
		buf = append(buf, "*1\r\n$6\r\nASKING\r\n"...)
	}
	buf = append(buf, r.raw...)
	if _, err := dc.conn.Write(buf); err != nil {
		stop()
		dc.conn.Close()
		return nil, fmt.Errorf("%w: %v", ErrFateUnknown, err)
	}
	if r.asking {
		if _, err := dc.rr.next(); err != nil {
			stop()
			dc.conn.Close()
			return nil, ErrFateUnknown
		}
	}
	reply, err := dc.rr.next()
	if !stop() || err != nil {
		dc.conn.Close()
		if err == nil {
			return reply, nil
		}
		return nil, ErrFateUnknown
	}
	p.put(n.addr, dc)
	return reply, nil
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
	d := &backendConn{n: n}
	conn, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 4096)
	return &directConn{conn: conn, br: br, rr: newReplyReader(br)}, nil
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

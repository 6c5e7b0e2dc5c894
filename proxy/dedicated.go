package proxy

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// directPool hands out dedicated backend connections (net.Conn and resp.Reader, read by a
// goroutine) to the Pub/Sub relays (pubsub*.go), the one user left. Blocking commands, WAIT
// and transactions use private connections (private.go), which draw on the same semaphore:
// at most limit (blocking-connections) connections of both kinds are in use at once over
// all nodes; idle ones are kept for reuse.
type directPool struct {
	c    *cluster
	sem  chan struct{}
	mu   sync.Mutex
	idle map[string][]*directConn
}

type directConn struct {
	conn net.Conn
	rr   *resp.Reader
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
	if _, err := dc.conn.Write(cmd); err != nil {
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

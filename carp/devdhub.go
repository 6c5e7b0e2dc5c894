package carp

import (
	"context"
	"fmt"
	"net"
	"sync"
)

// devd accepts at most max_clients (10 by default, devd -l) connections and keeps a
// backlog of 4 (sbin/devd/devd.cc: max_clients, listen(fd, 4)): an 11th client sits in
// the backlog and never gets an event. So the process holds one devd connection per
// socket path, opened by the first watcher that needs it and closed when the last one
// stops, and fans every CARP event out to the watchers whose vhid it concerns.
var devdHubs = struct {
	mu      sync.Mutex
	m       map[string]*devdConn     // socket path → current connection
	dialing map[string]chan struct{} // socket path → closed when a connect in progress ends
}{m: map[string]*devdConn{}, dialing: map[string]chan struct{}{}}

// devdConn is one connection to devd and the watchers it serves.
type devdConn struct {
	path string
	c    net.Conn
	done chan struct{} // closed when the connection ends; err says why
	err  error
	subs map[*devdSub]struct{} // guarded by devdHubs.mu
}

// devdSub is one watcher: it is kicked for every event match accepts.
type devdSub struct {
	match func(devdEvent) bool
	kick  chan<- struct{}
}

// watchDevd kicks on every CARP event from devd's SOCK_SEQPACKET socket at path (one
// record per read) that match accepts, and once right after it is attached to the
// connection (events may have been missed before). It shares one connection with every
// other watcher of path in this process. It returns nil when ctx ends, and the
// connection's error when devd goes away (the poller reattaches later and re-reads).
func watchDevd(ctx context.Context, path string, match func(devdEvent) bool, kick chan<- struct{}) error {
	sub := &devdSub{match: match, kick: kick}
	dc, err := attachDevd(ctx, path, sub)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	// Events may have been missed before this watcher was attached.
	kickNow(kick)
	select {
	case <-dc.done:
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("carp: devd connection: %w", dc.err)
	case <-ctx.Done():
		dc.detach(sub)
		return nil
	}
}

// attachDevd adds sub to the connection to path, connecting first when there is none.
// The connect runs without the lock (it can wait, on a devd whose backlog is full);
// watchers arriving meanwhile wait for it rather than open connections of their own.
func attachDevd(ctx context.Context, path string, sub *devdSub) (*devdConn, error) {
	for {
		devdHubs.mu.Lock()
		if dc := devdHubs.m[path]; dc != nil {
			dc.subs[sub] = struct{}{}
			devdHubs.mu.Unlock()
			return dc, nil
		}
		if ch := devdHubs.dialing[path]; ch != nil {
			devdHubs.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ch := make(chan struct{})
		devdHubs.dialing[path] = ch
		devdHubs.mu.Unlock()

		var d net.Dialer
		c, err := d.DialContext(ctx, "unixpacket", path)
		devdHubs.mu.Lock()
		delete(devdHubs.dialing, path)
		close(ch)
		if err != nil {
			devdHubs.mu.Unlock()
			return nil, fmt.Errorf("carp: connect to devd: %w", err)
		}
		dc := &devdConn{path: path, c: c, done: make(chan struct{}), subs: map[*devdSub]struct{}{sub: {}}}
		devdHubs.m[path] = dc
		devdHubs.mu.Unlock()
		go dc.read()
		return dc, nil
	}
}

// detach removes sub; the last watcher to leave closes the connection.
func (dc *devdConn) detach(sub *devdSub) {
	devdHubs.mu.Lock()
	defer devdHubs.mu.Unlock()
	delete(dc.subs, sub)
	if len(dc.subs) == 0 && devdHubs.m[dc.path] == dc {
		delete(devdHubs.m, dc.path)
		dc.c.Close()
	}
}

// read delivers devd's records until the connection ends.
func (dc *devdConn) read() {
	buf := make([]byte, 8192)
	var subs []*devdSub
	for {
		n, err := dc.c.Read(buf)
		if err != nil {
			devdHubs.mu.Lock()
			if devdHubs.m[dc.path] == dc {
				delete(devdHubs.m, dc.path)
			}
			dc.err = err
			close(dc.done)
			devdHubs.mu.Unlock()
			dc.c.Close()
			return
		}
		ev, err := parseDevdEvent(string(buf[:n]))
		if err != nil {
			continue
		}
		// match runs outside the lock: a watcher busy reading its state must not hold up
		// attaching or detaching the others.
		subs = subs[:0]
		devdHubs.mu.Lock()
		for s := range dc.subs {
			subs = append(subs, s)
		}
		devdHubs.mu.Unlock()
		for _, s := range subs {
			if s.match == nil || s.match(ev) {
				kickNow(s.kick)
			}
		}
	}
}

package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/handoff"
)

// An in-place restart passes each idle client connection to the successor process with
// the state that travels (internal/handoff): the old process detaches a client from its
// loop at a request boundary (movable), the new one adopts it into one of its loops with
// that state (AdoptClient). Bytes the client sent meanwhile wait in the socket.

// movable reports whether the client can move now: a plain TCP client at a request
// boundary (atBoundary). TLS clients (loop-served or bridged) never move: their TLS
// session (keys, sequence numbers) lives in this process's crypto/tls.
func (c *lclient) movable() bool { return !c.bridged && c.atBoundary() }

// atBoundary reports whether the client is at a request boundary with no state that
// cannot travel: nothing in flight or held, nothing read and unparsed, every reply
// written, and no transaction, WATCH, subscription, blocking command or CLIENT REPLY SKIP.
func (c *lclient) atBoundary() bool {
	ss := c.ss
	if c.closed || c.busy || c.resolving > 0 || c.fifo.len() > 0 || len(c.in) > 0 ||
		c.protoEr != "" || c.outPending() > 0 || c.held != 0 || c.draining || c.quitting || c.eof || c.paused {
		return false
	}
	if ss.tx.inMulti || ss.tx.watchConn != nil || (ss.ps != nil && ss.ps.subscribed()) || ss.inPubSub.Load() ||
		ss.skipNext || ss.blocking.Load() || ss.out.bytes.Load() != 0 || ss.inflight.Load() != 0 {
		return false
	}
	ss.pending.mu.Lock()
	queued := len(ss.pending.msgs)
	ss.pending.mu.Unlock()
	return queued == 0
}

// detach removes a movable client from its loop without closing its descriptor, which
// it returns with the client's state; the session ends here (as a closed client's).
func (c *lclient) detach() (handoff.Client, int) {
	ss := c.ss
	ss.csMu.Lock()
	st := handoff.Client{RESP3: ss.resp3.Load(), Authed: ss.authed, User: ss.cs.user, ReadOnly: ss.readonly,
		Name: ss.cs.name, LibName: ss.cs.libName, LibVer: ss.cs.libVer, ReplyOff: ss.replyOff,
		AuthRequired: c.l.s.authRequired(), Created: ss.cs.created.UnixNano()}
	ss.csMu.Unlock()
	if ss.ep != nil {
		st.VIP = ss.ep.vip
	}
	l := c.l
	c.closed = true
	l.p.Remove(c.fd)
	l.fds[c.fd] = nil
	delete(l.clients, c)
	fd := c.fd
	c.fd = -1
	c.releaseSegs(l)
	c.out, c.outOff, c.in = nil, 0, nil
	ss.cancel()
	go ss.finalize(c)
	l.s.metrics.handoffClients.WithLabelValues("passed").Inc()
	return st, fd
}

// TakeIdle detaches up to max movable clients from the event loops (for the successor).
// A TLS client at a request boundary is closed instead: it reconnects, to the successor
// (which accepts on the handed-over listener), rather than being cut in the middle of
// a command when this process exits.
func (s *Server) TakeIdle(max int) ([]handoff.Client, []int) {
	var cs []handoff.Client
	var fds []int
	for _, l := range s.loops {
		if len(fds) >= max {
			break
		}
		// Waited for without a time limit: what the loop detaches must reach the caller
		// (a loop that stopped has closed its clients: none is movable then).
		done := make(chan struct{})
		l.post(func() {
			defer close(done)
			for c := range l.clients {
				if len(fds) >= max {
					return
				}
				switch {
				case c.movable():
					st, fd := c.detach()
					cs, fds = append(cs, st), append(fds, fd)
				case c.bridged && c.atBoundary():
					c.close()
					s.metrics.handoffClients.WithLabelValues("tls_closed").Inc()
				}
			}
		})
		select {
		case <-done:
		case <-l.done:
			<-done // run once after the loop's exit (loopexit.go)
		}
	}
	return cs, fds
}

// ReturnClients serves clients again that TakeIdle detached but could not be passed.
func (s *Server) ReturnClients(cs []handoff.Client, fds []int) {
	for i, fd := range fds {
		if err := s.AdoptClient(cs[i], fd); err != nil {
			unix.Close(fd)
		}
	}
}

// AdoptClient serves a client connection passed by the previous process: it is
// registered with one of this process's loops (a poller cannot be passed) with the state
// that travelled. Its user is checked against this configuration at its first command,
// as after a reload (rights.go): a removed user's connection is closed, one made
// read-only downgraded. A client that never authenticated where no password was needed
// must authenticate here if this configuration needs one. The descriptor is the
// server's once AdoptClient returns nil.
func (s *Server) AdoptClient(st handoff.Client, fd int) error {
	if len(s.loops) == 0 {
		return errNoLoops
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return fmt.Errorf("proxy: adopt client: %w", err)
	}
	local, err1 := unix.Getsockname(fd)
	remote, err2 := unix.Getpeername(fd)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("proxy: adopt client: %w", err)
	}
	s.clients.Add(1) // adopted over maxclients too: it was a client already
	l := s.loops[int(s.nextLoop.Add(1))%len(s.loops)]
	c := s.newLoopClient(l, fd, sockAddrPort(local), sockAddrPort(remote))
	ss := c.ss
	ss.resp3.Store(st.RESP3)
	ss.replyOff = st.ReplyOff
	ss.csMu.Lock()
	ss.cs.name, ss.cs.libName, ss.cs.libVer, ss.cs.user = st.Name, st.LibName, st.LibVer, st.User
	if st.Created != 0 {
		ss.cs.created = time.Unix(0, st.Created)
	}
	ss.csMu.Unlock()
	if s.authRequired() {
		// Authenticated there by AUTH (as a user, or the default user by password): checked
		// against this configuration at the first command (rightsCfg nil forces
		// recheckRights). Authenticated only because no password was needed there: not here.
		ss.authed = st.Authed && (st.AuthRequired || st.User != "")
		ss.readonly = st.ReadOnly
		ss.rightsCfg = nil
	}
	ep := s.defaultEndpoint(nil)
	if st.VIP != "" {
		ep = s.Endpoint(st.VIP)
	}
	ep.opened(ss)
	s.mu.Lock()
	s.sessions[ss] = struct{}{}
	s.mu.Unlock()
	s.wg.Add(1)
	s.metrics.handoffClients.WithLabelValues("adopted").Inc()
	l.post(func() { l.accept(c) })
	return nil
}

// sockAddrPort is the address of a TCP socket (the zero value for anything else).
func sockAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	return netip.AddrPort{}
}

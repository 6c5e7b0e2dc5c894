package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// A TLS client of a listener the proxy wraps itself (TLSListener: the daemon's tls-port)
// is served by its event loop like a plain client: the loop waits on its socket, reads
// the ciphertext with read(2), decrypts it with crypto/tls in memory, and encrypts its
// replies in memory and writes them with write(2) (loopTLS). The TLS connection runs over
// a tlsSock: a socket in Go's poller for the handshake (in the accepting goroutine, within
// client-auth-timeout), then, once the loop takes the descriptor, a buffer the loop fills
// and drains, never blocking. The loop's one request path (lclient: read, parse, limits,
// dispatch, replies) reaches the connection through a narrow seam (clientRead,
// clientWrite, setInterest, inputWaiting, closeTransport; a socket or a loopTLS), so a
// TLS request costs the system calls of a plain one. TLS connections the proxy did not
// wrap (a tls.Listener made elsewhere) and TLS node connections go through a bridge
// (transport.go).

// TLSListener is a TLS listener that can give its TCP listener and configuration: the
// proxy accepts from Raw and makes the TLS connections itself, so that an event loop can
// serve them without a bridge (internal/gate's TLS listeners are such).
type TLSListener interface {
	net.Listener
	Raw() net.Listener
	TLSConfig() *tls.Config
}

// acceptTLS accepts a connection from ln's TCP listener and wraps it for an event loop.
func acceptTLS(ln TLSListener) (net.Conn, error) {
	conn, err := ln.Raw().Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(&tlsSock{tcp: conn, local: conn.LocalAddr(), remote: conn.RemoteAddr(), fd: -1}, ln.TLSConfig()), nil
}

// tlsSock is the connection under a loop-served TLS connection: tcp during the handshake;
// after take, the non-blocking descriptor fd that the loop reads and writes.
type tlsSock struct {
	tcp           net.Conn
	local, remote net.Addr
	fd            int
	// drained: the last read(2) came up short, so the socket is empty until the poller
	// reports it readable again (tlsFD.readable): a read says EAGAIN without a system call.
	drained bool
	rerr    error  // a read(2) error, reported once decrypted bytes before it are taken
	out     []byte // ciphertext to write, from outOff
	outOff  int
}

// errWouldBlock is what a loop-served tlsSock reads when its socket is empty; crypto/tls
// keeps the partial record it has and reports the (temporary) error without failing the
// connection.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "proxy: TLS socket would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

func (s *tlsSock) Read(p []byte) (int, error) {
	if s.tcp != nil {
		return s.tcp.Read(p)
	}
	if s.rerr != nil {
		return 0, s.rerr
	}
	if s.drained || len(p) == 0 {
		return 0, errWouldBlock
	}
	n, err := sysRead(s.fd, p)
	switch {
	case n > 0:
		s.drained = n < len(p)
		return n, nil
	case n == 0:
		s.rerr = io.EOF
		return 0, io.EOF
	case err == unix.EAGAIN || err == unix.EINTR:
		s.drained = true
		return 0, errWouldBlock
	}
	s.rerr = err
	return 0, err
}

// Write keeps the ciphertext for the loop's next write (loopTLS.write).
func (s *tlsSock) Write(p []byte) (int, error) {
	if s.tcp != nil {
		return s.tcp.Write(p)
	}
	s.out = append(s.out, p...)
	return len(p), nil
}

// Close closes the handshake's connection; the loop closes its descriptor itself.
func (s *tlsSock) Close() error {
	if s.tcp != nil {
		return s.tcp.Close()
	}
	return nil
}

func (s *tlsSock) LocalAddr() net.Addr  { return s.local }
func (s *tlsSock) RemoteAddr() net.Addr { return s.remote }

// NetConn is the TCP connection during the handshake (acceptLoop sets its options).
func (s *tlsSock) NetConn() net.Conn { return s.tcp }

func (s *tlsSock) SetDeadline(t time.Time) error {
	if s.tcp != nil {
		return s.tcp.SetDeadline(t)
	}
	return nil
}

func (s *tlsSock) SetReadDeadline(t time.Time) error {
	if s.tcp != nil {
		return s.tcp.SetReadDeadline(t)
	}
	return nil
}

func (s *tlsSock) SetWriteDeadline(t time.Time) error {
	if s.tcp != nil {
		return s.tcp.SetWriteDeadline(t)
	}
	return nil
}

// pending is the ciphertext not written yet.
func (s *tlsSock) pending() int { return len(s.out) - s.outOff }

// loopTLS is a loop-served TLS client's transport (owned by the loop).
type loopTLS struct {
	tc   *tls.Conn
	sock *tlsSock
	// more: the last read filled the buffer, so crypto/tls may hold more decrypted or
	// buffered bytes that no readiness event announces: the loop reads again (readAgain).
	more   bool
	queued bool // in loop.again
}

// tlsOutMax bounds the ciphertext a loop keeps for a client: replies are encrypted only
// while less is unwritten, the rest stays in the client's output (outPause and the
// output-buffer limits see both).
const tlsOutMax = 256 << 10

// tlsWriteMax is the most plaintext encrypted by one tls.Conn.Write.
const tlsWriteMax = 64 << 10

// clientFD returns the descriptor a loop serves for an admitted client connection and, for
// a TLS connection made by acceptTLS (its handshake done), the loop-served TLS transport;
// any other connection goes through loopFD.
func clientFD(conn net.Conn) (int, *loopTLS, error) {
	tc, ok := conn.(*tls.Conn)
	if !ok {
		fd, err := loopFD(conn)
		return fd, nil, err
	}
	sock, ok := tc.NetConn().(*tlsSock)
	if !ok || sock.tcp == nil {
		fd, err := loopFD(conn)
		return fd, nil, err
	}
	fd, err := takeFD(sock.tcp)
	if err != nil {
		return -1, nil, err
	}
	sock.tcp, sock.fd = nil, fd
	// The handshake may have read the client's first records already.
	return fd, &loopTLS{tc: tc, sock: sock, more: true}, nil
}

// tlsFD is the poller's handler of a loop-served TLS client: a readiness event means the
// socket may have bytes again.
type tlsFD struct{ c *lclient }

func (h tlsFD) readable() {
	h.c.tls.sock.drained = false
	h.c.readable()
}

func (h tlsFD) writable() { h.c.writable() }

// read decrypts into p (read(2) semantics: EAGAIN when nothing is there, 0 at the end).
func (t *loopTLS) read(p []byte) (int, error) {
	n := 0
	var err error
	for n < len(p) {
		var k int
		k, err = t.tc.Read(p[n:])
		n += k
		if err != nil {
			break
		}
	}
	t.more = n == len(p)
	switch {
	case n > 0:
		return n, nil // an error after these bytes is read again next time
	case err == nil || errors.Is(err, errWouldBlock):
		return -1, unix.EAGAIN
	case err == io.EOF:
		return 0, nil
	}
	return -1, err
}

// write encrypts w's pending bytes (while less than tlsOutMax ciphertext waits, one
// tls.Conn.Write per contiguous run up to tlsWriteMax) and writes the ciphertext. It
// returns the bytes written and the error of a failed write (EAGAIN included).
func (t *loopTLS) write(l *loop, fd int, w *wchain) (int, error) {
	for w.outLen() > 0 && t.sock.pending() < tlsOutMax {
		var b []byte
		if len(w.segs) == 0 {
			b = w.out[w.outOff:]
			if len(b) > tlsWriteMax {
				b = b[:tlsWriteMax]
			}
			w.outOff += len(b)
		} else {
			b = l.tlsGather(w)
		}
		if _, err := t.tc.Write(b); err != nil {
			return -1, err
		}
	}
	s := t.sock
	if s.pending() == 0 {
		return 0, nil
	}
	n, err := sysWrite(fd, s.out[s.outOff:])
	if n <= 0 {
		return 0, err
	}
	s.outOff += n
	if s.outOff == len(s.out) {
		s.outOff = 0
		if cap(s.out) > tlsWriteMax {
			s.out = nil
		} else {
			s.out = s.out[:0]
		}
		return n, nil
	}
	return n, unix.EAGAIN
}

// tlsGather copies up to tlsWriteMax bytes from the head of w (segments, then out) into
// the loop's TLS buffer and drops them from w.
func (l *loop) tlsGather(w *wchain) []byte {
	b := l.tlsBuf[:0]
	for len(b) < tlsWriteMax && len(w.segs) > 0 {
		seg := w.segs[0].b[w.segOff:]
		k := min(len(seg), tlsWriteMax-len(b))
		b = append(b, seg[:k]...)
		if k < len(seg) {
			w.segOff += k
			l.tlsBuf = b
			return b
		}
		w.dropSeg(l)
	}
	if k := min(len(w.out)-w.outOff, tlsWriteMax-len(b)); k > 0 {
		b = append(b, w.out[w.outOff:w.outOff+k]...)
		w.outOff += k
	}
	l.tlsBuf = b
	return b
}

// readAgain lists a TLS client whose bytes crypto/tls may still hold, to be read in the
// loop's next pass (run: runAgain) without a readiness event.
func (l *loop) readAgain(c *lclient) {
	if t := c.tls; !t.queued {
		t.queued = true
		l.again = append(l.again, c)
	}
}

// runAgain reads the clients listed by readAgain that are still read from.
func (l *loop) runAgain() {
	list := l.again
	l.again = l.againSpare[:0]
	for i, c := range list {
		c.tls.queued = false
		if !c.closed && c.reading && c.tls.more {
			l.readSafe(c) // lists c again while more is left (clientRead)
		}
		list[i] = nil
	}
	l.againSpare = list[:0]
}

// readSafe is c.readable outside a readiness event: a panic closes c (panics.go).
func (l *loop) readSafe(c *lclient) {
	defer l.recoverHandler(c)
	c.readable()
}

// The transport seam of lclient: its socket, or its loop-served TLS connection.

// clientRead reads the client's bytes into p (read(2) semantics).
func (c *lclient) clientRead(p []byte) (int, error) {
	if c.tls != nil {
		n, err := c.tls.read(p)
		if c.tls.more {
			c.l.readAgain(c)
		}
		return n, err
	}
	return sysRead(c.fd, p)
}

// clientWrite writes the client's pending output.
func (c *lclient) clientWrite() (int, error) {
	if c.tls != nil {
		return c.tls.write(c.l, c.fd, &c.wchain)
	}
	return c.writeTo(c.l, c.fd)
}

// setInterest sets what the loop waits for on the client's socket; a TLS client read
// from again whose bytes crypto/tls may hold is listed for the next pass.
func (c *lclient) setInterest(read, write bool) {
	c.l.p.Set(c.fd, read, write)
	if read && c.tls != nil && c.tls.more {
		c.l.readAgain(c)
	}
}

// inputWaiting reports whether bytes the client sent wait unread (drainIdle).
func (c *lclient) inputWaiting() bool {
	if c.tls != nil && c.tls.more {
		return true
	}
	var b [1]byte
	n, _, err := unix.Recvfrom(c.fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return n > 0 && err == nil
}

// unsentOut is what the client's transport holds unwritten: a TLS client's ciphertext.
func (c *lclient) unsentOut() int {
	if c.tls != nil {
		return c.tls.sock.pending()
	}
	return 0
}

// outPending is the client's output not written yet (its replies and its ciphertext).
func (c *lclient) outPending() int { return c.outLen() + c.unsentOut() }

// closeTransport closes the client's connection: a TLS client's close_notify is written
// if the socket takes it at once.
func (c *lclient) closeTransport() {
	if t := c.tls; t != nil {
		t.tc.Close() // the alert goes to sock.out (never blocks)
		if s := t.sock; s.pending() > 0 {
			sysWrite(c.fd, s.out[s.outOff:])
		}
		t.sock.out = nil
	}
	c.l.unregister(c.fd)
}

// register registers the client's socket with the loop's poller.
func (c *lclient) register() error {
	if c.tls != nil {
		if err := c.l.register(c.fd, tlsFD{c}, false); err != nil {
			return err
		}
		c.l.readAgain(c)
		return nil
	}
	return c.l.register(c.fd, c, false)
}

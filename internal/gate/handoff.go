package gate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// An in-place restart hands the open listener to the successor process
// (internal/handoff): the gate gives a duplicate of its socket (ListenerFD), stops
// accepting once the successor accepts on it (StopAccepting, without draining the
// clients: they are handed over one by one), and opens it again only if the hand-over
// fails (ResumeAccepting).

// ErrNotListening is returned by ListenerFD when the gate has no open listener.
var ErrNotListening = errors.New("gate: no open listener")

func (g *Gate) setWant(w bool) {
	g.mu.Lock()
	g.want = w
	g.mu.Unlock()
}

// ListenerFD returns a close-on-exec duplicate of the open listener's socket (under TLS,
// the TCP listener's); the caller closes it.
func (g *Gate) ListenerFD() (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln == nil || g.handed {
		return -1, ErrNotListening
	}
	ln := g.ln
	if r, ok := ln.(interface{ Raw() net.Listener }); ok {
		ln = r.Raw()
	}
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("gate: listener %T has no socket", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("gate: dup listener: %w", derr)
	}
	return fd, nil
}

// StopAccepting closes the gate's listener without draining its clients: the successor
// accepts on the same socket now. The gate does not open it again (ResumeAccepting
// undoes this).
func (g *Gate) StopAccepting() {
	g.mu.Lock()
	ln := g.ln
	g.ln, g.handed = nil, true
	if ln != nil {
		ln.Close()
	}
	g.mu.Unlock()
	if ln != nil {
		g.Metrics.deactivated(g.VIP)
		g.Log.Info("listener handed over to the successor; this process no longer accepts", "addr", g.Addr)
	}
}

// ResumeAccepting reopens the listener after a failed hand-over, if the gate should be
// active.
func (g *Gate) ResumeAccepting() {
	g.mu.Lock()
	g.handed = false
	want := g.want
	g.mu.Unlock()
	if want {
		if err := g.activate(context.Background(), time.Now()); err != nil {
			g.Log.Error("cannot reopen the client listener after a failed hand-over", "addr", g.Addr, "err", err)
		}
	}
}

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/gate"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/handoff"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy"
)

// restart ties an in-place restart (internal/handoff) to the daemon. As the new process
// (takeOver) it connects to the running one's hand-over socket, receives its listeners
// (the gates take them instead of binding: inheritedListen) and adopts its clients. As
// the running process (serveSuccessors) it listens on that socket and passes its
// listeners and idle clients to a successor, then exits. SIGTERM while a successor is
// expected (SIGUSR2, from the rc script) or being served does not cut the hand-over
// short (stopContext).
type restart struct {
	cfg  *config.Config
	path string // "" : hand-over off
	inst string // the configuration file: only the same instance takes over
	srv  *proxy.Server
	log  *slog.Logger

	mu        sync.Mutex
	inherited []*inheritedLn
	gates     []gateRef
	sent      []gateRef // the gates whose listeners went to the successor, by index
	adminLn   net.Listener
	offered   chan struct{} // the predecessor's listeners are in inherited
	takeDone  chan struct{} // taking over is over (or there was nothing to take over)
	finished  chan struct{} // this process handed everything over: it exits
	finishOne sync.Once

	active      atomic.Bool  // a successor is being served
	expectUntil atomic.Int64 // UnixNano until which a successor is expected (SIGUSR2)
}

// tookOver reports whether this process received listeners from a predecessor (call
// after takeOver).
func (rs *restart) tookOver() bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.inherited) > 0
}

// inheritedLn is a listening socket received from the predecessor.
type inheritedLn struct {
	info  handoff.ListenerInfo
	ln    net.Listener
	taken chan struct{}
	used  bool
	dead  bool
}

type gateRef struct {
	g   *gate.Gate
	tls bool
	vip string
}

// listenWait bounds how long a new process waits for its gates to take the inherited
// listeners (a VIP in BACKUP never does: that listener was not open anyway for long).
var listenWait = 10 * time.Second

func newRestart(cfg *config.Config, configFile string, srv *proxy.Server, log *slog.Logger) *restart {
	r := &restart{cfg: cfg, srv: srv, log: log.With("component", "handoff"), offered: make(chan struct{}),
		takeDone: make(chan struct{}), finished: make(chan struct{})}
	r.inst = configFile
	if abs, err := filepath.Abs(configFile); err == nil && configFile != "" {
		r.inst = abs
	}
	switch cfg.HandoffSocket {
	case "none":
	case "":
		// Only an instance with a configuration file has a default socket: two daemons
		// run from flags alone are not told apart.
		if configFile != "" {
			r.path = handoff.SocketPath(configFile)
		}
	default:
		r.path = cfg.HandoffSocket
	}
	return r
}

// takeOver connects to a running predecessor, if there is one, and takes over from it in
// the background; it returns once its listeners are here (or there are none to wait for).
// A process that could not load the slot map (ready false) takes nothing over: the
// running one serves on (until it stops, after handoff-wait if it expects a successor).
func (r *restart) takeOver(ctx context.Context, ready bool) {
	if r.path == "" {
		close(r.takeDone)
		return
	}
	if !ready {
		r.log.Warn("not taking over from a running process: the cluster is not reachable from this one")
		close(r.takeDone)
		return
	}
	conn, err := handoff.Dial(r.path, time.Second)
	if err != nil {
		if !errors.Is(err, handoff.ErrNoPredecessor) {
			r.log.Warn("cannot reach the running process's hand-over socket; starting without a hand-over", "socket", r.path, "err", err)
		}
		close(r.takeDone)
		return
	}
	r.log.Info("taking over from the running process", "socket", r.path)
	go func() {
		defer close(r.takeDone)
		defer conn.Close()
		start := time.Now()
		res, err := handoff.Take(ctx, conn, r, handoff.Options{Version: proxy.Version, Instance: r.inst, Log: r.log})
		if err != nil {
			r.log.Error("hand-over from the running process failed", "err", err, "listeners", res.Listeners, "clients_adopted", res.Passed)
			return
		}
		r.log.Info("hand-over from the running process complete", "listeners", res.Listeners, "clients_adopted", res.Passed,
			"clients_kept_there", res.Kept, "listener_only", res.ListenerOnly, "peer_version", res.Peer.Version, "took", time.Since(start))
	}()
	select {
	case <-r.offered:
	case <-r.takeDone:
	case <-time.After(r.cfg.HandoffWait):
		r.log.Warn("the running process did not pass its listeners in time; starting without them")
	}
}

// OfferListeners keeps the predecessor's listeners for the gates and waits until they
// take them (handoff.Sink).
func (r *restart) OfferListeners(ls []handoff.ListenerInfo, fds []int) []int {
	r.mu.Lock()
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "inherited-listener")
		ln, err := net.FileListener(f) // a duplicate: f is closed at once
		f.Close()
		if err != nil {
			r.log.Warn("inherited listener unusable", "addr", ls[i].Addr, "err", err)
			ln = nil
		}
		r.inherited = append(r.inherited, &inheritedLn{info: ls[i], ln: ln, taken: make(chan struct{}), dead: ln == nil})
	}
	list := r.inherited
	r.mu.Unlock()
	close(r.offered)
	timer := time.NewTimer(listenWait)
	defer timer.Stop()
	expired := false
	for _, in := range list {
		if in.dead || expired {
			continue
		}
		select {
		case <-in.taken:
		case <-timer.C:
			expired = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var adopted []int
	for i, in := range list {
		switch {
		case in.used:
			adopted = append(adopted, i)
		case !in.dead:
			in.dead = true
			in.ln.Close()
		}
	}
	return adopted
}

// AdoptClient serves a client of the predecessor (handoff.Sink).
func (r *restart) AdoptClient(c handoff.Client, fd int) error { return r.srv.AdoptClient(c, fd) }

// fdReserve is kept free for this process's own use (node connections, files).
const fdReserve = 256

// Room is how many more client descriptors this process can take (handoff.Sink).
func (r *restart) Room() int {
	n, err := handoff.Room(fdReserve)
	if err != nil {
		r.log.Warn("cannot count open descriptors; taking no clients", "err", err)
		return 0
	}
	return n
}

// inheritedListen wraps a gate's Listen: the predecessor's listener for the same address
// (and kind) is used once instead of binding a new socket.
func (r *restart) inheritedListen(isTLS bool, tc *tls.Config, base func(context.Context, string) (net.Listener, error)) func(context.Context, string) (net.Listener, error) {
	if base == nil {
		base = gate.Listen
	}
	return func(ctx context.Context, addr string) (net.Listener, error) {
		r.mu.Lock()
		for _, in := range r.inherited {
			if in.used || in.dead || in.info.Admin || in.info.Addr != addr || in.info.TLS != isTLS {
				continue
			}
			in.used = true
			close(in.taken)
			r.mu.Unlock()
			r.log.Info("accepting on the listener inherited from the running process", "addr", addr, "tls", isTLS)
			if isTLS {
				return gate.WrapTLS(in.ln, tc), nil
			}
			return in.ln, nil
		}
		r.mu.Unlock()
		return base(ctx, addr)
	}
}

// adminListen opens the admin listener: the predecessor's if it passed one for the same
// address (the two processes accept on it until the old one exits), else a new one.
func (r *restart) adminListen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	r.mu.Lock()
	for _, in := range r.inherited {
		if in.info.Admin && !in.used && !in.dead && in.info.Addr == addr {
			in.used = true
			close(in.taken)
			ln = in.ln
			break
		}
	}
	r.mu.Unlock()
	if ln == nil {
		var err error
		if ln, err = net.Listen(network, addr); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	r.adminLn = ln
	r.mu.Unlock()
	return ln, nil
}

// dupListener returns a close-on-exec duplicate of ln's socket.
func dupListener(ln net.Listener) (int, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return -1, errors.New("listener has no socket")
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
	return fd, derr
}

// attach registers a gate: its listener can be handed over and it can take an inherited one.
func (r *restart) attach(g *gate.Gate, isTLS bool, tc *tls.Config, vip string) {
	g.Listen = r.inheritedListen(isTLS, tc, g.Listen)
	r.mu.Lock()
	r.gates = append(r.gates, gateRef{g: g, tls: isTLS, vip: vip})
	r.mu.Unlock()
}

// Listeners returns the open listeners (handoff.Source).
func (r *restart) Listeners() ([]handoff.ListenerInfo, []int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var infos []handoff.ListenerInfo
	var fds []int
	var sent []gateRef
	for _, gr := range r.gates {
		fd, err := gr.g.ListenerFD()
		if err != nil {
			continue // not open (BACKUP)
		}
		infos = append(infos, handoff.ListenerInfo{Addr: gr.g.Addr, TLS: gr.tls, VIP: gr.vip})
		fds = append(fds, fd)
		sent = append(sent, gr)
	}
	r.sent = sent
	if r.adminLn != nil {
		if fd, err := dupListener(r.adminLn); err == nil {
			infos = append(infos, handoff.ListenerInfo{Addr: r.cfg.AdminListen, Admin: true})
			fds = append(fds, fd)
		}
	}
	return infos, fds, nil
}

// StopAccepting stops the gates whose listeners the successor accepts on (handoff.Source).
func (r *restart) StopAccepting(adopted []int) {
	r.mu.Lock()
	open := r.sent
	r.mu.Unlock()
	for _, i := range adopted {
		if i >= 0 && i < len(open) {
			open[i].g.StopAccepting()
		}
	}
}

// ResumeAccepting reopens every gate after a failed hand-over (handoff.Source).
func (r *restart) ResumeAccepting() {
	r.mu.Lock()
	gates := append([]gateRef(nil), r.gates...)
	r.mu.Unlock()
	for _, gr := range gates {
		gr.g.ResumeAccepting()
	}
}

// TakeIdle, Return and Remaining pass the proxy's clients (handoff.Source).
func (r *restart) TakeIdle(max int) ([]handoff.Client, []int) { return r.srv.TakeIdle(max) }
func (r *restart) Return(cs []handoff.Client, fds []int)      { r.srv.ReturnClients(cs, fds) }
func (r *restart) Remaining() int                             { return r.srv.Clients() }

// serveSuccessors listens on the hand-over socket (once taking over is done) and hands
// everything to the first successor that connects; the process then exits (finished).
// A failed hand-over leaves this process serving, and it listens again.
func (r *restart) serveSuccessors(ctx context.Context) {
	if r.path == "" {
		return
	}
	select {
	case <-r.takeDone:
	case <-ctx.Done():
		return
	}
	for ctx.Err() == nil {
		ln, err := handoff.Listen(r.path)
		if err != nil {
			r.log.Warn("no hand-over socket: a restart of this process will not hand over", "socket", r.path, "err", err)
			return
		}
		stop := context.AfterFunc(ctx, func() { ln.Remove() })
		var conn *handoff.Conn
		for {
			conn, err = ln.Accept()
			if err == nil || ctx.Err() != nil || !errors.Is(err, handoff.ErrPeerCreds) {
				break
			}
			r.log.Warn("hand-over connection refused", "err", err)
		}
		stop()
		if err != nil {
			ln.Remove()
			return
		}
		ln.Close() // one successor at a time; its own socket replaces this one
		r.active.Store(true)
		start := time.Now()
		r.log.Info("a successor connected: handing over listeners and idle clients", "drain", r.cfg.DrainTimeout)
		res, err := handoff.Give(context.Background(), conn, r, handoff.Options{Version: proxy.Version, Instance: r.inst, Drain: r.cfg.DrainTimeout, Log: r.log})
		conn.Close()
		r.active.Store(false)
		if err != nil {
			r.log.Error("hand-over to the successor failed; serving on", "err", err, "clients_passed", res.Passed)
			continue
		}
		r.log.Info("handed over to the successor; exiting", "listeners", res.Listeners, "clients_passed", res.Passed,
			"clients_left", res.Kept, "listener_only", res.ListenerOnly, "peer_version", res.Peer.Version, "took", time.Since(start))
		r.finishOne.Do(func() { close(r.finished) })
		return
	}
}

// spawnSuccessor starts a new process with this one's arguments, which takes over in
// place (a SIGHUP changed keys that need a restart: reload-restart). Under daemon(8) the
// new process is this one's child: when this one exits, daemon(8) starts another, which
// takes over from it the same way, so the supervised process ends with the new
// configuration and no client is cut. It reports whether it started one.
func (r *restart) spawnSuccessor(keys []string) bool {
	if r.path == "" || !r.cfg.ReloadRestart {
		return false
	}
	if r.active.Load() {
		r.log.Warn("a hand-over is in progress; the changed settings wait for it", "keys", keys)
		return true
	}
	exe, err := os.Executable()
	if err != nil {
		r.log.Error("cannot start a successor", "err", err)
		return false
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		r.log.Error("cannot start a successor", "err", err)
		return false
	}
	r.log.Info("changed settings need a restart: started a successor to hand over to", "keys", keys, "successor_pid", cmd.Process.Pid)
	go cmd.Wait()
	return true
}

// stopContext returns the context the daemon serves under: it ends when this process has
// handed everything over, or on SIGTERM/SIGINT (ctx), except that a SIGTERM while a
// successor is being served, or expected (SIGUSR2, within handoff-wait), waits for that
// hand-over to end first.
func (r *restart) stopContext(ctx context.Context) (context.Context, func()) {
	sctx, cancel := context.WithCancel(context.Background())
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	go func() {
		defer cancel()
		for {
			select {
			case <-usr2:
				r.expectUntil.Store(time.Now().Add(r.cfg.HandoffWait).UnixNano())
				r.log.Info("SIGUSR2: expecting a successor; a SIGTERM now waits for the hand-over", "wait", r.cfg.HandoffWait)
				continue
			case <-r.finished:
				return
			case <-ctx.Done():
			}
			break
		}
		if r.path == "" {
			return
		}
		// A SIGUSR2 sent just before the SIGTERM can reach its channel after it.
		select {
		case <-usr2:
			r.expectUntil.Store(time.Now().Add(r.cfg.HandoffWait).UnixNano())
		case <-time.After(20 * time.Millisecond):
		}
		if r.active.Load() || time.Now().UnixNano() < r.expectUntil.Load() {
			r.log.Info("stopping once the hand-over to the successor is done")
		}
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for r.active.Load() || time.Now().UnixNano() < r.expectUntil.Load() {
			select {
			case <-r.finished:
				return
			case <-t.C:
			}
		}
	}()
	return sctx, func() { signal.Stop(usr2); cancel() }
}

package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/netpoll"
)

// loop is one event loop. It owns the client connections assigned to it and one pipelined
// connection to every cluster node it has sent to, and serves all of them from one
// goroutine: a command is read, routed, written to its node, and its reply framed and
// written back to the client without crossing a goroutine, a channel or a lock. What is to
// be written is collected during a pass over the ready descriptors and written at the end
// of the pass, so one write to a node carries the commands of every client that was ready
// (and one write to a client every reply it can have).
//
// Commands that need more than one round trip or session state (MULTI, blocking commands,
// Pub/Sub, SCAN, INFO, redirections …) run on the slow path: a goroutine executes them with
// the session machinery and the loop only waits for the reply (see lclient.runSlow); the
// commands it sends to a node go through the loop's connection to that node (sendExt).
// TLS clients are served by the loop with crypto/tls in memory (tlsloop.go); TLS node
// connections reach it through a bridge (transport.go).
type loop struct {
	s   *Server
	id  int
	p   *netpoll.Poller
	fds []fdHandler // by descriptor
	evs []netpoll.Event

	mu    sync.Mutex
	tasks []func()
	spare []func()

	// Owned by the loop goroutine.
	now     time.Time // the coarse clock: read once per pass
	nowNano int64
	rbuf    []byte // the read buffer every connection reads into
	// TLS clients served by the loop (tlsloop.go): those to read again without a
	// readiness event, and the buffer replies are encrypted from.
	again, againSpare []*lclient
	tlsBuf            []byte

	// Replies by reference (chunk.go, outchain.go).
	chunks     chunkPool
	repChunk   *chunk     // the chunk of the node connection whose replies are being handled
	pinned     []*lreq    // held replies that may reference a chunk (unpinHeld)
	refClients []*lclient // clients whose unwritten replies may reference a chunk (keepRefs)
	pinGen     uint32
	iov        []unix.Iovec // writev's vectors
	freeSegs   [][]oseg     // emptied segment lists for reuse
	arena      *chunk       // where long commands are kept (keepRaw), from arenaOff
	arenaOff   int

	clientMem atomic.Int64 // bytes held for the loop's clients at the last check (clientmem.go)
	memSince  int64        // Pub/Sub bytes taken in since that check
	scratch   []byte       // reply assembly (multi-key merges)
	free      []*lreq
	outBufs   [][]byte // client output buffers not in use
	keyIdx    [16]int
	argsBuf   [][]byte
	slowArgs  [][]byte // a slow command's arguments (account)
	// parseWork counts the bytes handed to process (readable): linear in what clients
	// send, as a test checks.
	parseWork int64
	// slow log entries added since the last tick (account)
	slowLogged int
	slotBuf    []int
	partsBuf   []*lreq
	dirtyB     []*lbackend
	dirtyC     []*lclient
	backends   map[*node]*lbackend
	parked     []*lbackend            // connections waiting behind a script (busypark.go)
	privAll    map[*lbackend]struct{} // private connections (private.go)
	privIdle   map[*node][]*lbackend  // those not bound to a client
	clients    map[*lclient]struct{}
	stats      *statSet
	lastTick   int64
	// holdP: waits may keep the loop's P (netpoll's held wait) because GOMAXPROCS leaves
	// another P for the rest of the proxy; checked every tick (GOMAXPROCS can change).
	holdP   bool
	hotLeft int // commands until the next hot key sample (observeHot)
	// The last command looked up in the fast table (loop.fastLookup).
	lastTable *map[string]*fastCmd
	lastName  []byte
	lastFC    *fastCmd
	stopping  bool
	after     afterExit // tasks posted after the loop returned (loopexit.go)
	done      chan struct{}
}

// fdHandler is a connection served by a loop.
type fdHandler interface {
	readable()
	writable()
}

const (
	loopReadBuffer = 64 << 10
	loopTick       = 100 * time.Millisecond
	// heldWait bounds a held wait: a loop that found nothing to do for this long waits the
	// ordinary way, giving its P back to the scheduler.
	heldWait = 2 * time.Millisecond
)

func newLoop(s *Server, id int) (*loop, error) {
	p, err := netpoll.New(256)
	if err != nil {
		return nil, err
	}
	return &loop{s: s, id: id, p: p, rbuf: make([]byte, loopReadBuffer), backends: map[*node]*lbackend{},
		clients: map[*lclient]struct{}{}, stats: newStatSet(), done: make(chan struct{})}, nil
}

// post runs f on the loop goroutine, between two passes.
func (l *loop) post(f func()) {
	l.mu.Lock()
	l.tasks = append(l.tasks, f)
	first := len(l.tasks) == 1
	if l.after.exited {
		l.postAfterExit()
		return
	}
	l.mu.Unlock()
	if first {
		l.p.Wake()
	}
}

// call runs f on the loop and waits for it, at most timeout; it reports whether f ran.
func (l *loop) call(f func(), timeout time.Duration) bool {
	done := make(chan struct{})
	l.post(func() { f(); close(done) })
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-l.done:
		return false
	case <-t.C:
		return false
	}
}

func (l *loop) runTasks() {
	l.mu.Lock()
	tasks := l.tasks
	l.tasks = l.spare[:0]
	l.mu.Unlock()
	for i, f := range tasks {
		l.runTask(f)
		tasks[i] = nil
	}
	l.spare = tasks
}

func (l *loop) register(fd int, h fdHandler, write bool) error {
	for fd >= len(l.fds) {
		l.fds = append(l.fds, make([]fdHandler, len(l.fds)+64)...)
	}
	if err := l.p.Add(fd, write); err != nil {
		return err
	}
	l.fds[fd] = h
	return nil
}

// unregister removes and closes fd.
func (l *loop) unregister(fd int) {
	l.p.Remove(fd)
	l.fds[fd] = nil
	unix.Close(fd)
}

func (l *loop) clock() {
	l.now = time.Now()
	l.nowNano = l.now.UnixNano()
}

// run serves until stop.
func (l *loop) run() {
	// Not locked to its thread: a pass that runs longer than the scheduler's 10 ms slice is
	// preempted, and a locked goroutine then costs a hand-off of its thread each time
	// (measured: MSET -P16 -c500 used 10-20 % more CPU locked).
	defer close(l.done)
	l.clock()
	l.lastTick = l.nowNano
	l.holdP = l.canHoldP()
	hold := false // the last wait found work: the next one keeps the P
	for {
		timeout := loopTick
		if hold {
			timeout = heldWait
		}
		if len(l.again) > 0 {
			timeout = 0
		}
		evs, woke, err := l.p.Wait(l.evs[:0], int(timeout/time.Millisecond), hold)
		l.evs = evs
		hold = l.holdP && (len(evs) > 0 || woke)
		if err != nil {
			l.s.log.Error("event loop wait failed", "loop", l.id, "err", err)
			time.Sleep(10 * time.Millisecond)
		}
		l.clock()
		for _, e := range evs {
			if e.Fd >= len(l.fds) {
				continue
			}
			h := l.fds[e.Fd]
			if h == nil {
				continue
			}
			l.handle(e, h)
		}
		l.runTasks()
		l.runAgain()
		l.flush()
		if l.nowNano-l.lastTick >= int64(loopTick) {
			l.lastTick = l.nowNano
			l.tick()
		}
		if l.stopping {
			l.shutdown()
			l.exit()
			return
		}
	}
}

// flush writes what the pass produced: commands to the nodes first, then replies.
func (l *loop) flush() {
	for i := 0; i < len(l.dirtyB); i++ { // a failing backend may fail requests: clients get dirty
		b := l.dirtyB[i]
		b.dirty = false
		l.flushOne(b) // b.flush(), recovering a panic (panics.go)
		l.dirtyB[i] = nil
	}
	l.dirtyB = l.dirtyB[:0]
	for i := 0; i < len(l.dirtyC); i++ {
		c := l.dirtyC[i]
		c.dirty = false
		l.flushOne(c) // c.flush(): it may resume the client's commands
		l.dirtyC[i] = nil
	}
	l.dirtyC = l.dirtyC[:0]
	l.unpinHeld(false)
}

// unpinHeld bounds what clients pin of the node connections' chunks (chunk.go) with
// replies they hold for earlier ones and with replies their sockets did not take yet: at
// the end of a pass, when the chunks they pin exceed heldRefBudget, and on every tick
// (force), those replies are copied into memory of their own, so a reference lives one
// tick at most and a loop's clients pin heldRefBudget at most.
func (l *loop) unpinHeld(force bool) {
	if len(l.pinned) == 0 && len(l.refClients) == 0 {
		return
	}
	l.pinGen++
	pinned := 0
	count := func(ch *chunk) {
		if ch != nil && ch.pinGen != l.pinGen {
			ch.pinGen = l.pinGen
			pinned += len(ch.buf)
		}
	}
	keep := l.pinned[:0]
	for _, r := range l.pinned {
		if r.refc == nil || !r.done {
			continue // written, released or reused since
		}
		keep = append(keep, r)
		count(r.refc)
	}
	clear(l.pinned[len(keep):])
	l.pinned = keep
	kc := l.refClients[:0]
	for _, c := range l.refClients {
		refs := false
		for _, sg := range c.segs {
			if sg.ch != nil {
				refs = true
				count(sg.ch)
			}
		}
		if c.closed || !refs {
			c.refKept = false
			continue
		}
		kc = append(kc, c)
	}
	clear(l.refClients[len(kc):])
	l.refClients = kc
	if !force && pinned <= heldRefBudget {
		return
	}
	for i, r := range l.pinned {
		if r.refc != nil && r.done {
			r.reply = append(r.reply[:0], r.ref...)
			l.chunks.unref(r.refc)
			r.ref, r.refc = nil, nil
		}
		l.pinned[i] = nil
	}
	l.pinned = l.pinned[:0]
	for i, c := range l.refClients {
		c.unpin(l)
		c.refKept = false
		l.refClients[i] = nil
	}
	l.refClients = l.refClients[:0]
}

// keepRefs lists a client whose socket took part of its replies: the references to
// chunks among the rest may wait for the next pass, within unpinHeld's bounds.
func (l *loop) keepRefs(c *lclient) {
	if !c.refKept {
		c.refKept = true
		l.refClients = append(l.refClients, c)
	}
}

// heldRefBudget bounds the chunk bytes a loop's held replies pin (unpinHeld).
const heldRefBudget = 32 << 20

// tick enforces timeouts: backends that stopped answering, idle clients.
func (l *loop) tick() {
	cfg := l.s.conf()
	l.slowLogged = 0
	l.holdP = l.canHoldP()
	l.trimFree()
	l.chunks.trim()
	l.unpinHeld(true)
	l.checkClientMem()
	for _, b := range l.backends {
		b.checkTimeout(cfg.BackendReadTimeout, cfg.BackendSuspectAfter)
	}
	l.tickParked(cfg.BackendReadTimeout, cfg.BackendSuspectAfter)
	l.tickPriv()
	for c := range l.clients {
		if cfg.ClientIdleTimeout > 0 {
			c.checkIdle(cfg.ClientIdleTimeout)
		}
		c.checkAuthDeadline(cfg.ClientAuthTimeout)
		if !c.closed {
			if c.softSince != 0 { // over the soft limit: judged again as time passes
				c.checkOutput()
			}
			c.fifo.trim()
		}
	}
}

// canHoldP reports whether the loops may keep their Ps while they wait: only when the
// runtime has a P left over for everything else (the accept loop, the slow path, refreshes).
func (l *loop) canHoldP() bool {
	return runtime.GOMAXPROCS(0) > len(l.s.loops)
}

// stop makes the loop close every connection and return.
func (l *loop) stop() {
	l.post(func() { l.stopping = true })
	<-l.done
}

func (l *loop) shutdown() {
	for c := range l.clients {
		c.close()
	}
	for _, b := range l.backends {
		b.failAll(errShuttingDown, nil, "")
	}
	for _, b := range l.parked {
		b.failAll(errShuttingDown, nil, "")
	}
	l.closePrivAll()
	l.flush()
	l.p.Close()
}

// backend returns the loop's connection to n.
func (l *loop) backend(n *node) *lbackend {
	b := l.backends[n]
	if b == nil {
		b = &lbackend{l: l, n: n, fd: -1}
		l.backends[n] = b
	}
	return b
}

// takeFD detaches the descriptor of a TCP connection from Go's poller: it returns a
// non-blocking duplicate and closes conn.
func takeFD(conn net.Conn) (int, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		conn.Close()
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		conn.Close()
		return -1, err
	}
	nfd := -1
	var derr error
	cerr := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	conn.Close()
	if cerr != nil {
		return -1, cerr
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return -1, err
	}
	return nfd, nil
}

// startLoops starts the event loops (event-loops; 0: one per two cores, at most 8). They
// serve every client and every node connection; where the system has no poller the
// proxy cannot serve, and Start reports why.
func (s *Server) startLoops() {
	n := s.conf().EventLoops
	if n == 0 {
		n = min(max(runtime.NumCPU()/2, 1), 8)
	}
	for i := 0; i < n; i++ {
		l, err := newLoop(s, i)
		if err != nil {
			for _, l := range s.loops {
				l.p.Close()
			}
			s.loops = nil
			s.loopErr = fmt.Errorf("proxy: event loop: %w", err)
			return
		}
		s.loops = append(s.loops, l)
	}
	for _, l := range s.loops {
		go l.run()
	}
}

// acceptLoop hands an accepted connection (plain TCP, or TLS: tlsloop.go) to an event
// loop.
func (s *Server) acceptLoop(ep *Endpoint, conn net.Conn) {
	if len(s.loops) == 0 {
		conn.Close() // Start failed: nothing serves clients
		return
	}
	if !s.admit(ep, conn) {
		return
	}
	raw := conn
	for { // TLS, over a tlsSock (tlsloop.go) or not
		nc, ok := raw.(interface{ NetConn() net.Conn })
		if !ok || nc.NetConn() == nil {
			break
		}
		raw = nc.NetConn()
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		if ka := s.conf().TCPKeepalive; ka > 0 {
			tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: ka, Interval: ka / 3, Count: 3})
		} else {
			tc.SetKeepAlive(false)
		}
	}
	if tc, ok := conn.(*tls.Conn); ok {
		go func() {
			if err := s.tlsHandshake(ep, tc); err != nil {
				s.clients.Add(-1)
				return
			}
			s.toLoop(ep, conn)
		}()
		return
	}
	s.toLoop(ep, conn)
}

// toLoop hands an admitted client connection to the next event loop.
func (s *Server) toLoop(ep *Endpoint, conn net.Conn) {
	local, remote := tcpAddrPort(conn.LocalAddr()), tcpAddrPort(conn.RemoteAddr())
	fd, lt, err := clientFD(conn) // tlsloop.go
	if err != nil {
		s.clients.Add(-1)
		s.log.Warn("event loop: take client connection", "err", err)
		return
	}
	l := s.loops[int(s.nextLoop.Add(1))%len(s.loops)]
	c := s.newLoopClient(l, fd, local, remote)
	_, c.bridged = conn.(*tls.Conn)
	c.tls = lt
	ep.opened(c.ss)
	s.mu.Lock()
	s.sessions[c.ss] = struct{}{}
	s.mu.Unlock()
	s.wg.Add(1)
	l.post(func() { l.accept(c) })
}

// tcpAddrPort is the address of a TCP endpoint (the zero value for anything else).
func tcpAddrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	return netip.AddrPort{}
}

// finalize ends a loop client's session once nothing runs for it any more: its
// WATCH and subscription connections are released, and the server forgets it.
func (ss *session) finalize(c *lclient) {
	ss.releaseWatch(false)
	ss.closePubsub()
	ss.s.track.disable(ss)
	ss.s.monitorRemove(ss)
	close(ss.closed)
	s := ss.s
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
	s.clients.Add(-1)
	ss.ep.closedSession(ss)
	s.wg.Done()
}

// sysRead and sysWrite are read(2) and write(2) on the loop's non-blocking descriptors.
// They never block, so they skip the runtime's entersyscall/exitsyscall bookkeeping (and
// the P hand-off it can trigger), which showed in profiles at one call per request.
func sysRead(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

func sysWrite(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

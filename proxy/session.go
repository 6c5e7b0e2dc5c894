package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"
)

// session is one client connection. A reader goroutine parses commands and dispatches them
// to the backends at once (pipelining); the writer goroutine (writeRun, running only while
// there is something to write) waits for the replies in
// order, follows redirections, executes commands that need a dedicated connection, and
// writes the replies back, flushing when nothing more is ready.
type session struct {
	s       *Server
	ep      *Endpoint // the VIP it was accepted on (endpoint.go); nil in unit tests
	conn    net.Conn
	id      uint64
	pending *reqQueue
	ctx     context.Context // ends when the client is gone or the session is closed
	cancel  context.CancelFunc
	closed  chan struct{}
	closing atomic.Bool

	csMu   sync.Mutex
	cs     clientState
	remote string // the client's address as text, once needed (slowlogClient)
	tx     txState
	ps     *pubsubState // set by the writer (execSubscribe) while the reader waits

	// Writer state, handed from one writer goroutine to the next through pending's lock.
	bw                 lazyWriter
	writeOK            bool // false once a write to the client failed
	replyOff, skipNext bool // CLIENT REPLY OFF / SKIP

	out      outBuffer
	inPubSub atomic.Bool
	resp3    atomic.Bool  // HELLO 3 (set by the reader; replies carry it in request.resp3)
	blocking atomic.Bool  // in a blocking command (CLIENT LIST flag b)
	lastCmd  atomic.Int64 // UnixNano of the last command (CLIENT LIST idle)
	first    [1]byte      // the idle reader's one-byte buffer

	authed   bool // reader goroutine only
	readonly bool
	authFail int // failed AUTH attempts (authfail.go)
	// rightsCfg is the configuration authed and readonly were last checked against (rights.go)
	rightsCfg *Config
	// inflight counts the commands read and not yet answered; order remembers the slot
	// map the ones sent meanwhile were routed by (send).
	inflight atomic.Int64
	order    routeOrder

	written map[*node]bool // masters this session wrote to (writer goroutine only), for WAIT
}

// newSession makes the session of a goroutine-served client.
func newSession(s *Server, conn net.Conn) *session {
	ss := newSessionState(s, conn)
	return ss
}

// newSessionState makes a session without its reply queue.
func newSessionState(s *Server, conn net.Conn) *session {
	ctx, cancel := context.WithCancel(s.ctx)
	ss := &session{
		s:       s,
		conn:    conn,
		id:      s.nextID.Add(1),
		ctx:     ctx,
		cancel:  cancel,
		closed:  make(chan struct{}),
		cs:      clientState{created: time.Now()},
		authed:  !s.authRequired(),
		writeOK: true,
	}
	ss.rightsCfg = s.conf()
	ss.bw.conn = conn
	ss.pending = newReqQueue(s.conf().ClientPipelineDepth, func() { go ss.writeRun() })
	return ss
}

// drain makes the session stop reading; pending replies are still written.
func (ss *session) drain() {
	ss.closing.Store(true)
	ss.conn.SetReadDeadline(time.Now())
}

// run reads the client until it is done and returns once the session is closed (the writer
// goroutine, started on demand, closes ss.closed after the last reply).
func (ss *session) run() {
	ss.readLoop()
	<-ss.closed
}

// countingReader counts bytes received from the client.
type countingReader struct {
	r     io.Reader
	stats *sharedStats
}

func (cr countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	if n > 0 {
		cr.stats.bytes(n, 0)
	}
	return n, err
}

func (ss *session) readLoop() {
	defer ss.pending.close()
	defer ss.recoverReader()
	g := &guard{r: countingReader{ss.conn, &ss.s.stats}}
	var cr *cmdReader // nil while the client is idle: no read buffers held
	lastActive := time.Now()
	// barrier is the last request that later commands must not overtake (a blocking
	// command, EXEC, SUBSCRIBE …). The reader keeps reading the socket while it runs, so
	// that a client that disconnects while blocked is noticed at once, but waits for it
	// before handling the next command.
	var barrier *request
	waitBarrier := func() bool {
		if barrier == nil {
			return true
		}
		select {
		case <-barrier.done:
			barrier = nil
			return true
		case <-ss.ctx.Done():
			return false
		}
	}
	for {
		cfg := ss.s.conf() // limits apply to open connections after a reload
		g.setLimits(cfg, ss.authed)
		if !ss.closing.Load() {
			// Like Redis, blocked and subscribed clients are not subject to the idle timeout.
			var dl time.Time
			if cfg.ClientIdleTimeout > 0 && barrier == nil && (ss.ps == nil || !ss.ps.subscribed()) {
				dl = lastActive.Add(cfg.ClientIdleTimeout)
			}
			if cr != nil && (dl.IsZero() || time.Until(dl) > readRelease) {
				dl = time.Now().Add(readRelease)
			}
			if ad := ss.authDeadline(cfg.ClientAuthTimeout); !ad.IsZero() && (dl.IsZero() || ad.Before(dl)) {
				dl = ad
			}
			ss.conn.SetReadDeadline(dl)
			if ss.closing.Load() { // drain raced with the line above
				ss.conn.SetReadDeadline(time.Now())
			}
		}
		var cmds []redcon.Command
		var err error
		if cr == nil {
			// Idle: wait for the next byte without holding read buffers.
			var n int
			n, err = ss.conn.Read(ss.first[:])
			if n > 0 {
				ss.s.stats.bytes(n, 0)
				g.held = ss.first[:n]
				cr = newCmdReader(g, &ss.s.parseWork)
				continue
			}
		} else {
			cmds, err = cr.ReadCommands()
		}
		if err != nil {
			var ne net.Error
			timeout := errors.As(err, &ne) && ne.Timeout()
			if timeout && ss.authExpired(cfg.ClientAuthTimeout) {
				return
			}
			if timeout && !ss.closing.Load() && g.err == nil {
				if barrier != nil {
					select {
					case <-barrier.done:
						barrier, lastActive = nil, time.Now()
					default:
					}
				}
				exempt := barrier != nil || ss.ps != nil && ss.ps.subscribed()
				if to := cfg.ClientIdleTimeout; to == 0 || exempt || time.Since(lastActive) < to {
					if cr != nil && g.idle() && cr.Buffered() == 0 {
						cr = nil // quiet for readRelease: drop the read buffers
					}
					continue
				}
			}
			msg, proto := isProtoError(err)
			if barrier != nil && !proto {
				select {
				case <-barrier.done:
				default:
					// The client went away while a blocking command runs: cancel it, which
					// closes its dedicated connection (Redis drops a closed client's
					// replies too).
					if !timeout {
						ss.cancel()
					}
					return
				}
			}
			if proto {
				ss.s.metrics.protoErrors.Inc()
				ss.log().Debug("client protocol error", "client_id", ss.id, "err", msg)
				ss.pending.put(ss.ctx, &request{reply: errorReply("ERR " + msg), done: closedDone(), slot: -2, local: true})
			}
			return
		}
		lastActive = time.Now()
		ss.s.stats.pipelineDepth(len(cmds))
		for i := range cmds {
			if !waitBarrier() {
				return
			}
			r := ss.newRequest(cmds[i].Args, cmds[i].Raw)
			ss.inflight.Add(1)
			if !ss.pending.put(ss.ctx, r) {
				return
			}
			if r.slot == -2 { // QUIT or a fatal error: stop reading
				return
			}
			if r.barrier {
				barrier = r
			}
		}
	}
}

func closedDone() chan struct{} {
	ch := make(chan struct{}, 1)
	ch <- struct{}{}
	return ch
}

// writeRun is the writer: it answers the queued commands in order and writes Pub/Sub
// messages, flushing when nothing more is ready, and exits when nothing is left (it is
// started again by the next command). After the reader is done it closes the session.
func (ss *session) writeRun() {
	defer ss.recoverWriter()
	bw := &ss.bw
	write := func(b []byte) {
		ss.s.stats.bytes(0, len(b))
		if _, err := bw.Write(b); err != nil {
			ss.writeOK = false
		}
		if idle := ss.pending.idle(); idle || bw.Buffered() > 64<<10 {
			if err := bw.Flush(idle); err != nil {
				ss.writeOK = false
			}
		}
	}
	for {
		r, msgs, closed := ss.pending.next()
		if closed {
			bw.Flush(true)
			ss.conn.Close()
			ss.cancel()
			ss.releaseWatch(false)
			ss.closePubsub()
			close(ss.closed)
			return
		}
		if msgs != nil {
			for _, msg := range msgs {
				if ss.writeOK {
					write(msg)
				}
				ss.releaseOut(int64(len(msg)))
			}
			continue
		}
		if r == nil {
			if bw.Buffered() > 0 {
				if err := bw.Flush(true); err != nil {
					ss.writeOK = false
				}
				continue
			}
			if ss.pending.stop() {
				return
			}
			continue
		}
		if !ss.writeOK {
			continue // the client is gone; just let the reader finish
		}
		reply := ss.finish(r)
		ss.inflight.Add(-1)
		if r.barrier && !ss.closing.Load() {
			if idle := ss.s.conf().ClientIdleTimeout; idle > 0 && (ss.ps == nil || !ss.ps.subscribed()) {
				ss.conn.SetReadDeadline(time.Now().Add(idle)) // the reader may be waiting without one
			}
		}
		if !ss.applyReplyMode(r) {
			write(reply)
		}
		ss.releaseReq(r)
		if ss.writeOK && r.slot == -2 {
			bw.Flush(false)
			ss.writeOK = false
		}
		if !ss.writeOK {
			ss.conn.Close()
			ss.cancel()
		}
	}
}

// target returns the node that should serve r now.
func (ss *session) target(r *request) (*node, error) {
	if r.pinned != nil {
		return r.pinned, nil
	}
	m := ss.s.cl.smap.Load()
	if m == nil {
		return nil, ErrNoSlotMap
	}
	if r.slot < 0 {
		return m.masters[rand.IntN(len(m.masters))], nil
	}
	if rf := ss.s.conf().ReadFrom; rf != "master" && r.info != nil && r.info.flags&(flagReadonly|flagWrite) == flagReadonly && !r.asking {
		reps := m.replicas[m.owner[r.slot]]
		for i := range reps {
			if n := reps[(ss.id+uint64(i))%uint64(len(reps))]; !n.down.Load() {
				return n, nil
			}
		}
		if rf == "replica" {
			return nil, fmt.Errorf("%w: no reachable replica serves slot %d (read-from replica)", ErrNotSent, r.slot)
		}
	}
	return m.master(r.slot), nil
}

// send dispatches a command the reader just read, unless it could overtake an earlier
// command of the client (routeOrder). Such a command is deferred: the writer sends it when
// its turn comes (awaitReply).
func (ss *session) send(r *request) {
	if m := ss.s.cl.smap.Load(); m != nil && r.pinned == nil && r.slot >= 0 &&
		!ss.order.admit(m, r.slot, ss.inflight.Load() == 0) {
		r.deferred = true
		return
	}
	ss.dispatch(r)
}

// dispatch sends r to its node without waiting for the reply.
func (ss *session) dispatch(r *request) {
	n, err := ss.target(r)
	if err != nil {
		r.complete(nil, err)
		return
	}
	r.owner = ss
	n.send(ss.ctx, r, ss.id)
}

// execDirect runs r on a dedicated connection, synchronously.
func (ss *session) execDirect(r *request, n *node) {
	r.node = n
	defer ss.blockedCall(r)()
	reply, err := ss.s.direct.do(ss.ctx, n, r)
	r.reply, r.err = reply, err
}

// finish produces the reply of r for the client, in order.
func (ss *session) finish(r *request) []byte {
	var reply []byte
	switch {
	case r.local:
		<-r.done
		if len(r.args) == 0 { // a protocol error: no command to account
			return r.reply
		}
		reply = r.reply
	case r.exec != nil:
		reply = r.exec(ss, r)
		if r.barrier {
			r.done <- struct{}{}
		}
	case r.parts != nil:
		replies := make([][]byte, len(r.parts))
		for i, p := range r.parts {
			replies[i] = ss.await(p)
		}
		reply = r.merge(replies)
	case r.direct:
		n, err := ss.target(r)
		if err != nil {
			r.err = err
		} else {
			ss.execDirect(r, n)
		}
		reply = ss.await(r)
		r.done <- struct{}{}
	default:
		reply = ss.await(r)
	}
	result := "ok"
	if len(reply) > 0 && reply[0] == '-' {
		result = "error"
	} else if r.redirected {
		result = "redirected"
	}
	reply = ss.account(r, result, reply)
	if r.resp3 {
		reply = toRESP3(r.args, r.queued, reply)
	}
	return reply
}

// call sends r (already dispatched or not) and returns its final reply: the writer-side
// primitive for handlers that need several round trips.
func (ss *session) call(r *request) []byte {
	if r.done == nil {
		r.done = make(chan struct{}, 1)
	}
	if r.direct {
		n, err := ss.target(r)
		if err != nil {
			r.err = err
		} else {
			ss.execDirect(r, n)
		}
	} else {
		ss.dispatch(r)
	}
	return ss.await(r)
}

// await waits for the reply of a dispatched request (a direct request has it already),
// following MOVED/ASK, retrying TRYAGAIN, CLUSTERDOWN and unsent commands with backoff,
// and returns the bytes for the client. It never re-sends a command whose fate is unknown.
func (ss *session) await(r *request) []byte {
	reply := ss.awaitReply(r)
	if r.info != nil && (r.info.flags&flagWrite != 0 || readonlyDenied[r.info.name]) && r.node != nil {
		ss.wrote(r.node)
	}
	return reply
}

// applyReplyMode applies CLIENT REPLY ON|OFF|SKIP in order and reports whether r's reply
// is not to be written.
func (ss *session) applyReplyMode(r *request) bool {
	switch r.replyMode {
	case replyModeOn:
		ss.replyOff, ss.skipNext = false, false
	case replyModeOff:
		ss.replyOff, r.noReply = true, true
	case replyModeSkip:
		ss.skipNext, r.noReply = true, true
	default:
		if ss.replyOff || ss.skipNext {
			r.noReply, ss.skipNext = true, false
		}
	}
	return r.noReply
}

// wrote records that the session wrote to n (for WAIT).
func (ss *session) wrote(n *node) {
	ss.csMu.Lock()
	defer ss.csMu.Unlock()
	if ss.written == nil {
		ss.written = map[*node]bool{}
	}
	ss.written[n] = true
}

func (ss *session) awaitReply(r *request) []byte {
	cfg := ss.s.conf()
	cl := ss.s.cl
	m := ss.s.metrics
	if r.deferred {
		r.deferred = false
		ss.dispatch(r)
	}
	if !r.direct {
		<-r.done
	}
	redirects, retries := 0, 0
	noscriptRetried := false
	backoff := cfg.TryagainBackoff
	var redirStart time.Time // first redirection
	redirBackoff := max(cfg.TryagainBackoff, time.Millisecond)
	for {
		var next *node
		if r.err != nil {
			// A command for one given node (fan-out) is not retried: waiting for a dead
			// node to come back would only delay the error that names it.
			if !errors.Is(r.err, ErrNotSent) && !errors.Is(r.err, ErrNoSlotMap) || retries >= cfg.TryagainRetries || r.pinned != nil {
				return errorReply("ERR proxy: " + r.err.Error())
			}
			retries++
			// A slot map that names another owner by now (its node was replaced, or its
			// slots moved away): send there at once.
			if n, err := ss.target(r); err == nil && r.node != nil && n != r.node {
				next = n
			} else {
				cl.requestRefresh(refreshNoOwner)
				if !ss.sleep(backoff) {
					return errorReply("ERR proxy: " + r.err.Error())
				}
				backoff = min(2*backoff, 500*time.Millisecond)
			}
		} else {
			kind, slot, addr := parseRedirect(r.reply)
			switch kind {
			case redirNone:
				if bytes.HasPrefix(r.reply, []byte("-NOSCRIPT")) && !noscriptRetried && ss.recoverNoScript(r) {
					noscriptRetried = true
					next = r.node
					break
				}
				return r.reply
			case redirMoved, redirAsk:
				redirects++
				if redirects == 1 {
					redirStart = time.Now()
				}
				if redirects > cfg.MaxRedirects {
					// The nodes disagree about the owner (a new epoch is still spreading):
					// back off, refresh, and follow the latest redirection again, within
					// redirect-budget.
					left := cfg.RedirectBudget - time.Since(redirStart)
					if left <= 0 {
						return errorReply("ERR proxy: " + errTooManyRedirects.Error() + ": last was " + strings.TrimSpace(string(r.reply[1:])))
					}
					m.redirectBackoffs.Inc()
					cl.requestRefresh(refreshMoved)
					if !ss.sleep(min(redirBackoff, left)) {
						return errorReply("ERR proxy: " + errTooManyRedirects.Error() + ": last was " + strings.TrimSpace(string(r.reply[1:])))
					}
					redirBackoff = min(2*redirBackoff, 100*time.Millisecond)
				}
				next = cl.node(resolveAddr(addr, r.node.addr))
				r.redirected = true
				if kind == redirMoved {
					m.redirects.WithLabelValues("moved", r.node.addr).Inc()
					defer cl.learnOwner(slot, next)
				} else {
					m.redirects.WithLabelValues("ask", r.node.addr).Inc()
					r.asking = true
				}
			case redirTryAgain, redirClusterDown:
				if kind == redirTryAgain {
					m.redirects.WithLabelValues("tryagain", r.node.addr).Inc()
				} else {
					m.redirects.WithLabelValues("clusterdown", r.node.addr).Inc()
					cl.requestRefresh(refreshDown)
				}
				if retries >= cfg.TryagainRetries || !ss.sleep(backoff) {
					return r.reply
				}
				retries++
				backoff = min(2*backoff, 500*time.Millisecond)
			}
		}
		// Send again: to the redirection target, or to the current owner.
		if next == nil {
			var err error
			if next, err = ss.target(r); err != nil {
				r.err = err
				continue
			}
		}
		ss.releaseReq(r)
		r.reply, r.err = nil, nil
		if r.direct {
			ss.execDirect(r, next)
		} else {
			r.owner = ss
			next.send(ss.ctx, r, ss.id)
			<-r.done
		}
		r.asking = false
	}
}

// sleep waits d unless the client goes away; it reports whether the wait completed.
func (ss *session) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ss.ctx.Done():
		return false
	}
}

// slowlogClient returns the client's name and address for a slow log entry (the address
// text is made once).
func (ss *session) slowlogClient() (name, addr string) {
	ss.csMu.Lock()
	defer ss.csMu.Unlock()
	if ss.remote == "" {
		ss.remote = ss.conn.RemoteAddr().String()
	}
	return ss.cs.name, ss.remote
}

// account records metrics, the slow log and the hot key sample for a finished command
// and returns its reply.
func (ss *session) account(r *request, result string, reply []byte) []byte {
	name := commandLabel(ss.s.cl.cmds.Load(), r)
	d := time.Since(r.start)
	ss.lastCmd.Store(time.Now().UnixNano())
	ss.s.metrics.commandDone(name, result, d)
	if cfg := ss.s.conf(); d >= cfg.SlowlogSlowerThan && cfg.SlowlogSlowerThan >= 0 && cfg.SlowlogMaxLen > 0 {
		node := ""
		if r.node != nil {
			node = r.node.addr
		}
		cname, addr := ss.slowlogClient()
		ss.s.slow.add(cfg.SlowlogMaxLen, slowEntry{at: r.start, duration: d, args: r.args, client: addr, name: cname, node: node})
	}
	if r.slot >= 0 && r.info != nil && r.info.first > 0 && r.info.first < len(r.args) {
		ss.s.hot.observe(r.args[r.info.first])
	}
	return reply
}

// learnOwner records that slot moved to n (from a MOVED reply) and asks for a full refresh.
// A MOVED that agrees with the map (a command sent to an arbitrary node) changes nothing.
func (c *cluster) learnOwner(slot int, n *node) {
	for {
		old := c.smap.Load()
		if old == nil || old.master(slot) == n {
			return
		}
		if c.smap.CompareAndSwap(old, old.withOwner(slot, n)) {
			break
		}
	}
	c.ownerChanges.notify()
	c.requestRefresh(refreshMoved)
}

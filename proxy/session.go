package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// session is the state of one client connection that outlives a single command: identity
// (CLIENT LIST), authentication, transaction, WATCH and Pub/Sub state, and the reply mode.
// Its event loop (lclient) reads, frames and answers the client; commands that wait (the
// slow path: MULTI/EXEC, blocking commands, Pub/Sub, scripts, redirections being
// followed) run with the session in a goroutine and hand their reply back to the loop.
type session struct {
	s       *Server
	ep      *Endpoint // the VIP it was accepted on (endpoint.go); nil in unit tests
	conn    net.Conn
	id      uint64
	pending *msgQueue
	ctx     context.Context // ends when the client is gone or the session is closed
	cancel  context.CancelFunc
	closed  chan struct{}
	closing atomic.Bool

	csMu   sync.Mutex
	cs     clientState
	remote string // the client's address as text, once needed (slowlogClient)
	tx     txState
	ps     *pubsubState // set by the writer (execSubscribe) while the reader waits

	replyOff, skipNext bool // CLIENT REPLY OFF / SKIP

	out      outBuffer
	inPubSub atomic.Bool
	resp3    atomic.Bool  // HELLO 3 (set by the reader; replies carry it in request.resp3)
	blocking atomic.Bool  // in a blocking command (CLIENT LIST flag b)
	lastCmd  atomic.Int64 // UnixNano of the last command (CLIENT LIST idle)

	monitor   atomic.Bool               // in monitor mode (monitor.go; CLIENT LIST flag O)
	blockedOn atomic.Pointer[blockedAt] // where its blocking command waits (unblock.go), nil when none

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

	// Client-side caching (tracking.go): the settings (nil: off; slow path only), the
	// invalidations waiting for the running command's reply, and whether the session
	// subscribed to __redis__:invalidate.
	track  *trackState
	inv    invQueue
	invSub atomic.Bool
}

// newSessionState makes the session of a new client; its loop client sets pending.
func newSessionState(s *Server, conn net.Conn) *session {
	ctx, cancel := context.WithCancel(s.ctx)
	ss := &session{
		s:      s,
		conn:   conn,
		id:     s.nextID.Add(1),
		ctx:    ctx,
		cancel: cancel,
		closed: make(chan struct{}),
		cs:     clientState{created: time.Now()},
		authed: !s.authRequired(),
	}
	ss.rightsCfg = s.conf()
	return ss
}

// drain makes the session stop reading; pending replies are still written.
func (ss *session) drain() {
	ss.closing.Store(true)
	ss.conn.SetReadDeadline(time.Now())
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
	if r.asking { // an ASK goes to the master it names
		return m.master(r.slot), nil
	}
	if n := m.nodeFor(r.slot, r.info, ss.s.conf().ReadFrom, ss.id); n != nil {
		return n, nil
	}
	return nil, fmt.Errorf("%w: no reachable replica serves slot %d (read-from replica)", ErrNotSent, r.slot)
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
	ss.sendNode(n, r)
}

// sendNode sends r to n on the session's event loop, through the loop's pipelined
// connection to n (sendExt): a client's commands to one node, fast and slow, share one
// connection and its order. r completes when the reply arrives.
func (ss *session) sendNode(n *node, r *request) {
	r.node = n
	l := ss.loop()
	l.post(func() { l.sendExt(n, r) })
}

// loop returns the event loop that serves the session's client (any loop for a session
// without one, in unit tests).
func (ss *session) loop() *loop {
	if lc, ok := ss.conn.(*loopConn); ok && lc.c != nil {
		return lc.c.l
	}
	return ss.s.loops[ss.id%uint64(len(ss.s.loops))]
}

// execDirect runs r on a private connection to n (private.go), synchronously; the session
// counts as blocked while the node holds it.
func (ss *session) execDirect(r *request, n *node) {
	r.node = n
	r.reply, r.err = ss.doPriv(n, r)
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
	if r.slot >= 0 && r.info != nil && r.info.First > 0 && r.info.First < len(r.args) {
		ss.s.hot.observe(r.args[r.info.First])
	}
	if r.resp3 {
		reply = toRESP3(r.args, r.queued, reply)
	}
	if ss.track != nil || ss.inv.running {
		reply = ss.trackAfter(r, reply)
	}
	if len(r.args) > 0 && ss.ps != nil {
		ss.invSub.Store(ss.subscribedToInvalidate())
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
	if r.info != nil && (r.info.Flags&command.Write != 0 || readonlyDenied[r.info.Name]) && r.node != nil {
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
	var loadStart time.Time  // first CLUSTERDOWN retried because its node was loading
	redirBackoff := max(cfg.TryagainBackoff, time.Millisecond)
	for {
		var next *node
		if r.err != nil {
			// A command for one given node (fan-out) is not retried: waiting for a dead
			// node to come back would only delay the error that names it.
			if !errors.Is(r.err, ErrNotSent) && !errors.Is(r.err, ErrNoSlotMap) || retries >= cfg.TryagainRetries || r.pinned != nil {
				return resp.ErrorReply("ERR proxy: " + r.err.Error())
			}
			retries++
			// A slot map that names another owner by now (its node was replaced, or its
			// slots moved away): send there at once.
			if n, err := ss.target(r); err == nil && r.node != nil && n != r.node {
				next = n
			} else {
				cl.requestRefresh(refreshNoOwner)
				if !ss.sleep(backoff) {
					return resp.ErrorReply("ERR proxy: " + r.err.Error())
				}
				backoff = min(2*backoff, 500*time.Millisecond)
			}
		} else {
			kind, slot, addr := resp.ParseRedirect(r.reply)
			switch kind {
			case resp.RedirNone:
				if bytes.HasPrefix(r.reply, []byte("-NOSCRIPT")) && !noscriptRetried && ss.recoverNoScript(r) {
					noscriptRetried = true
					next = r.node
					break
				}
				return r.reply
			case resp.RedirMoved, resp.RedirAsk:
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
						return resp.ErrorReply("ERR proxy: " + errTooManyRedirects.Error() + ": last was " + strings.TrimSpace(string(r.reply[1:])))
					}
					m.redirectBackoffs.Inc()
					cl.requestRefresh(refreshMoved)
					if !ss.sleep(min(redirBackoff, left)) {
						return resp.ErrorReply("ERR proxy: " + errTooManyRedirects.Error() + ": last was " + strings.TrimSpace(string(r.reply[1:])))
					}
					redirBackoff = min(2*redirBackoff, 100*time.Millisecond)
				}
				next = cl.node(resolveAddr(addr, r.node.addr))
				r.redirected = true
				if kind == resp.RedirMoved {
					m.redirects.WithLabelValues("moved", r.node.addr).Inc()
					defer cl.learnOwner(slot, next)
				} else {
					m.redirects.WithLabelValues("ask", r.node.addr).Inc()
					r.asking = true
				}
			case resp.RedirTryAgain, resp.RedirClusterDown:
				if kind == resp.RedirTryAgain {
					m.redirects.WithLabelValues("tryagain", r.node.addr).Inc()
				} else {
					m.redirects.WithLabelValues("clusterdown", r.node.addr).Inc()
					cl.requestRefresh(refreshDown)
				}
				if kind == resp.RedirClusterDown && cl.stillLoading(r.node, &loadStart) {
					retries = 0 // busy.go: a restarted node loading its data, then rejoining
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
			ss.sendNode(next, r)
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

package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// Private node connections, as predixy's: a connection that carries one client's command
// that may hold it for long (BLPOP, XREAD BLOCK …), its WAIT, or its transaction (from WATCH
// to EXEC, or EXEC alone: cmd_tx.go) is an lbackend like the
// loop's shared ones (the same dial, hand-shake, TLS bridge, write path and reply framing),
// owned by the client's loop, but bound to one session while it carries its commands.
// Bound, it takes one of the blocking-connections slots (Server.privSlots, over all loops
// and nodes: a blocking command's, WAIT's, a transaction's, and each Pub/Sub subscription
// connection's for the subscription's life); unbound, it waits in its loop's idle list for
// the next one (privIdleMax per node, privIdleTime at most). A connection whose state is unknown
// (its client went away while a command was in flight, a failure) is closed, never
// reused: closing it also ends the command's wait on the node. Pub/Sub subscription
// connections are private connections too, in push mode (pubsub_link.go).
//
// A loop client in its plain state sends its blocking command there from the loop
// (sendBlocking): no goroutine waits; the reply comes back through readable as any other
// and the client reads nothing after it until it is answered (busy), as on one Redis. The
// slow path (redirections being followed, clients not in their plain state, WAIT,
// transactions) binds one through acquirePriv and waits for its replies.

// privState is what makes an lbackend private.
type privState struct {
	gen     uint64      // counts bindings: a late watch of an earlier binding does nothing
	ss      *session    // the session it is bound to; nil while idle
	c       *lclient    // the loop client whose command it carries (sendBlocking), or nil
	stop    func() bool // ends the watch on the session's context
	nodeID  int64       // the connection's CLIENT ID on the node (0: unknown), asked on dial
	blockAt int64       // once this many bytes are written the session blocks (0: none)
	blocked bool        // counted as blocked (blocked_clients, CLIENT LIST flag b, CLIENT UNBLOCK)
	dead    bool        // closed: never bound again
	since   int64       // in the idle list since (loop clock)
	push    *pushSink   // a subscription connection: what it reads unasked goes there (pubsub_link.go)
}

const (
	privIdleMax  = 16               // idle private connections kept per loop and node
	privIdleTime = 30 * time.Second // and for how long
)

// blocksClient reports whether the command blocks its connection on the node: the
// blocking commands, XREAD and XREADGROUP with BLOCK only.
func blocksClient(info *command.Info, args [][]byte) bool {
	if info == nil || info.Flags&command.Blocking == 0 || len(args) == 0 {
		return false
	}
	if name := lowerName(args[0]); name == "xread" || name == "xreadgroup" {
		for _, a := range args[1:] {
			if bytes.EqualFold(a, []byte("block")) {
				return true
			}
		}
		return false
	}
	return true
}

// takePriv binds a private connection to n to ss (run on the loop): an idle one, or a new
// one that dials when its first command is queued.
func (l *loop) takePriv(n *node, ss *session) (*lbackend, error) {
	sem := l.s.privSlots
	select {
	case sem <- struct{}{}:
	default:
		return nil, fmt.Errorf("%w: all %d blocking-connections are in use", ErrNotSent, cap(sem))
	}
	var b *lbackend
	if idle := l.privIdle[n]; len(idle) > 0 {
		b = idle[len(idle)-1]
		idle[len(idle)-1] = nil
		l.privIdle[n] = idle[:len(idle)-1]
	} else {
		b = l.newPriv(n)
	}
	p := b.priv
	p.gen++
	p.ss = ss
	gen := p.gen
	// The client gone (or the session closed): the connection is closed, which ends the
	// command's wait on the node too.
	p.stop = context.AfterFunc(ss.ctx, func() {
		l.post(func() {
			if p.gen == gen && p.ss == ss {
				b.closePriv()
			}
		})
	})
	return b, nil
}

// newPriv makes a private connection to n on the loop, bound to nothing (it dials with its
// first command): takePriv's, or a service connection's (svclink.go).
func (l *loop) newPriv(n *node) *lbackend {
	b := &lbackend{l: l, n: n, fd: -1, priv: &privState{}}
	if l.privAll == nil {
		l.privAll = map[*lbackend]struct{}{}
		l.privIdle = map[*node][]*lbackend{}
	}
	l.privAll[b] = struct{}{}
	return b
}

// unbind ends b's binding: its slot of blocking-connections is free again.
func (l *loop) unbind(b *lbackend) {
	p := b.priv
	if p.ss == nil {
		return
	}
	p.unblock(b)
	p.stop()
	p.ss, p.c, p.stop, p.blockAt = nil, nil, nil, 0
	<-l.s.privSlots
}

// releasePriv unbinds b: back to the idle list when its state is known (nothing in
// flight), else closed.
func (l *loop) releasePriv(b *lbackend) {
	if b.priv.dead {
		return
	}
	l.unbind(b)
	if b.inflight.len() > 0 || b.fd < 0 && !b.dialing || l.stopping || len(l.privIdle[b.n]) >= privIdleMax {
		b.closePriv()
		return
	}
	b.priv.since = l.nowNano
	l.privIdle[b.n] = append(l.privIdle[b.n], b)
}

// closePriv closes b for good (its commands in flight fail).
func (b *lbackend) closePriv() {
	if !b.priv.dead {
		b.failAll(errFateUnknown, nil, "")
	}
}

// privGone takes a private connection out of use for good (failAll).
func (l *loop) privGone(b *lbackend) {
	p := b.priv
	if p.dead {
		return
	}
	l.unbind(b)
	p.dead = true
	delete(l.privAll, b)
	if sink := p.push; sink != nil {
		p.push = nil
		defer sink.lost()
	}
	idle := l.privIdle[b.n]
	for i, o := range idle {
		if o == b {
			l.privIdle[b.n] = append(idle[:i], idle[i+1:]...)
			idle[len(idle)-1] = nil
			break
		}
	}
}

// tickPriv closes private connections idle for privIdleTime.
func (l *loop) tickPriv() {
	for _, idle := range l.privIdle {
		for _, b := range idle {
			if l.nowNano-b.priv.since > int64(privIdleTime) {
				defer b.closePriv() // after the range: closePriv edits the list
			}
		}
	}
}

// abandonPriv closes the private connections to n (health.go: its slots moved away while
// it was unwell): a command written fails with errFailedOver, one not written goes to the
// new owner.
func (l *loop) abandonPriv(n *node) {
	for b := range l.privAll {
		if b.n == n {
			b.abandon()
		}
	}
}

// closePrivAll closes every private connection (shutdown).
func (l *loop) closePrivAll() {
	for b := range l.privAll {
		b.failAll(errShuttingDown, nil, "")
	}
}

// privWritten is called when b wrote: the session counts as blocked once its blocking
// command is written to the node.
func (b *lbackend) privWritten() {
	p := b.priv
	if p.blockAt == 0 || b.written < p.blockAt || p.ss == nil {
		return
	}
	p.blockAt = 0
	p.blocked = true
	ss := p.ss
	ss.s.blocked.Add(1)
	ss.blocking.Store(true)
	if p.nodeID != 0 {
		ss.blockedOn.Store(&blockedAt{n: b.n, id: p.nodeID})
	}
}

// unblock ends the session's blocked state.
func (p *privState) unblock(b *lbackend) {
	p.blockAt = 0
	if !p.blocked {
		return
	}
	p.blocked = false
	ss := p.ss
	ss.s.blocked.Add(-1)
	ss.blocking.Store(false)
	ss.blockedOn.Store(nil)
}

// privReply hands the reply of r, read on the private connection b, on: to its loop
// client, or to the slow path. Once nothing is in flight the connection is unbound first,
// so the reply's handler may bind it (or another) again.
func (l *loop) privReply(b *lbackend, r *lreq, rep []byte) {
	if b.inflight.len() == 0 {
		b.priv.unblock(b)
		if b.priv.c != nil {
			l.releasePriv(b) // the loop path releases on its reply, the slow path explicitly
		}
	}
	if r.c != nil {
		r.c.privDone(r, rep, nil)
	} else {
		l.extDone(r, rep, nil)
	}
}

// failReq fails r, a command queued on b (failAll).
func (b *lbackend) failReq(r *lreq, err error) {
	if b.priv != nil && r.c != nil {
		r.c.privDone(r, nil, err)
		return
	}
	b.l.failReq(r, err)
}

// sendBlocking sends a blocking command of a loop client on a private connection of the
// loop (fkBlocking). It reports false, as dispatch, while earlier commands of the client
// are unanswered: the private connection could overtake them.
func (c *lclient) sendBlocking(fc *fastCmd, args [][]byte, raw []byte) bool {
	if c.fifo.len() > 0 {
		return false
	}
	l := c.l
	info := fc.info
	idx, ok := info.KeyIndexes(args, l.keyIdx[:])
	if !ok || len(idx) == 0 {
		return c.slow(args, raw) // the node answers the syntax error
	}
	slot, cross := command.KeysSlot(args, idx)
	if cross {
		c.localReply(fc, errCrossSlot)
		return true
	}
	m := l.s.cl.smap.Load()
	if m == nil {
		return c.slow(args, raw)
	}
	n := c.pick(m, slot, info)
	if n == nil {
		return c.slow(args, raw)
	}
	l.observeHot(args[idx[0]])
	r := l.getReq(c)
	r.info, r.label, r.slot, r.resp3 = info, fc.label, slot, c.resp3
	l.keepRaw(r, raw)
	c.fifo.push(r)
	c.busy = true // nothing after it is started until it is answered
	if info.Flags&command.Write != 0 && !c.wroteTo(n) {
		c.ss.wrote(n)
	}
	b, err := l.takePriv(n, c.ss)
	if err != nil {
		l.post(func() { c.privDone(r, nil, err) }) // retried by the slow path, as on a failure
		return true
	}
	b.priv.c = c
	b.enqueue(r)
	if blocksClient(info, args) {
		b.priv.blockAt = b.queuedOff
	}
	return true
}

// privDone ends a blocking command sent by sendBlocking: its reply, or the redirection or
// failure the slow path resolves (on private connections too) while the client stays busy.
func (c *lclient) privDone(r *lreq, rep []byte, err error) {
	if err == nil && (c.closed || rep[0] != '-' || resp.RedirectKind(rep) == resp.RedirNone) {
		c.blockDone(r, rep)
		return
	}
	if err != nil && (!errors.Is(err, ErrNotSent) || c.closed || c.eof || c.l.stopping) {
		c.blockDone(r, resp.ErrorReply("ERR proxy: "+err.Error()))
		return
	}
	or, perr := r.resolution(rep, err)
	if perr != nil {
		c.blockDone(r, resp.ErrorReply("ERR proxy: "+perr.Error()))
		return
	}
	or.direct = true
	ss, l := c.ss, c.l
	go func() {
		out := ss.await(or)
		ss.releaseReq(or)
		redirected := or.redirected
		l.post(func() {
			r.redirected = r.redirected || redirected
			c.blockDone(r, out)
		})
	}()
}

// blockDone answers the blocking command r and lets the client go on.
func (c *lclient) blockDone(r *lreq, rep []byte) {
	c.busy = false
	c.complete(r, rep)
	if c.closed {
		go c.ss.finalize(c)
		return
	}
	c.pullMsgs()
	c.resume()
	c.markDirty()
}

// privConn is a private connection bound to a slow-path session between acquirePriv and
// release.
type privConn struct {
	l *loop
	b *lbackend
}

// acquirePriv binds a private connection to n on the session's loop.
func (ss *session) acquirePriv(n *node) (*privConn, error) {
	l := ss.loop()
	type res struct {
		b   *lbackend
		err error
	}
	ch := make(chan res, 1)
	l.post(func() {
		if l.stopping {
			ch <- res{nil, fmt.Errorf("%w: %v", ErrNotSent, errShuttingDown)}
			return
		}
		b, err := l.takePriv(n, ss)
		ch <- res{b, err}
	})
	x := <-ch
	if x.err != nil {
		return nil, x.err
	}
	return &privConn{l: l, b: x.b}, nil
}

// roundTrip writes cmd and returns its replies (replies of them), or the first failure.
// With block set, the session counts as blocked once cmd is written. The session going
// away closes the connection, which fails what is in flight.
func (pc *privConn) roundTrip(cmd []byte, replies int, block bool) ([][]byte, error) {
	reqs := make([]*request, replies)
	for i := range reqs {
		reqs[i] = &request{done: make(chan struct{}, 1)}
	}
	l, b := pc.l, pc.b
	l.post(func() {
		if b.priv.dead {
			for _, r := range reqs {
				r.complete(nil, fmt.Errorf("%w: connection to %s closed", ErrNotSent, b.n.addr))
			}
			return
		}
		for i, r := range reqs {
			q := &lreq{ext: r, slowEntry: true, start: l.nowNano}
			if i == 0 {
				q.raw = cmd
			}
			b.enqueue(q)
		}
		if block {
			b.priv.blockAt = b.queuedOff
		}
	})
	out := make([][]byte, 0, replies)
	var err error
	for _, r := range reqs {
		<-r.done
		if err == nil && r.err != nil {
			err = r.err
		}
		out = append(out, r.reply)
	}
	return out, err
}

// release unbinds the connection: kept for reuse when ok (its state is known), else closed.
func (pc *privConn) release(ok bool) {
	l, b := pc.l, pc.b
	l.post(func() {
		if ok {
			l.releasePriv(b)
		} else {
			b.closePriv()
		}
	})
}

// doPriv sends r to n on a private connection and waits for the reply (ASKING first after
// an ASK): the slow path's blocking commands.
func (ss *session) doPriv(n *node, r *request) ([]byte, error) {
	pc, err := ss.acquirePriv(n)
	if err != nil {
		return nil, err
	}
	var cmd []byte
	want := 1
	if r.asking {
		cmd = append(cmd, askingCmd...)
		want = 2
	}
	cmd = append(cmd, r.raw...)
	reps, err := pc.roundTrip(cmd, want, blocksClient(r.info, r.args))
	pc.release(err == nil)
	if err != nil {
		return nil, err
	}
	return reps[want-1], nil
}

// nodeClientID asks a new connection its CLIENT ID on the node (for CLIENT UNBLOCK); 0
// when the node does not tell (a busy node answers -BUSY: the command still runs).
func nodeClientID(conn net.Conn, timeout time.Duration) (int64, error) {
	conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	rep, err := roundTrip(conn, replyNodeClientID)
	if err != nil {
		return 0, fmt.Errorf("client id: %w", err)
	}
	if len(rep) < 4 || rep[0] != ':' {
		return 0, nil
	}
	id, err := strconv.ParseInt(string(rep[1:len(rep)-2]), 10, 64)
	if err != nil {
		return 0, nil
	}
	return id, nil
}

// closeFD closes a descriptor a dead private connection got too late.
func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

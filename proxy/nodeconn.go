package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// lreq is a command served by a loop: a client's command (in its reply queue) or one part
// of a multi-key command. It is pooled by its loop and released once its reply (or
// failure) has been handled.
type lreq struct {
	c      *lclient
	parent *lreq // for a part: the command it belongs to
	info   *command.Info
	label  string // metrics label
	raw    []byte // the RESP command (owned, reused)
	slot   int
	node   *node
	start  int64 // coarse nanoseconds when read
	sent   int64 // coarse nanoseconds when queued to the node
	// sendOff is where the command starts in its backend connection's byte stream: it was
	// written (fate unknown when the connection breaks) iff the connection wrote past it.
	sendOff int64

	done       bool   // reply is complete and waits for the replies before it
	reply      []byte // held reply (owned, reused)
	ref        []byte // or the held reply by reference, in refc (chunk.go)
	refc       *chunk
	rawc       *chunk // the chunk raw lies in (a long command, loop.keepRaw), or nil
	redirected bool
	slowEntry  bool // produced by the slow path: not pooled
	// ext is the slow-path request this command carries (sendExt): its reply or failure
	// completes ext. A command with neither c nor ext is an ASKING whose +OK is dropped.
	ext   *request
	resp3 bool // the client speaks RESP3: nulls are converted when it completes

	// multi-key commands: the parent merges its parts' replies.
	kind    fastKind
	pending int
	nkeys   int
	sum     int64
	errRep  []byte
	keyPos  []int32  // part: positions of its keys in the command
	vals    [][2]int // parent (MGET): offset and length in reply of each key's value
}

func (l *loop) getReq(c *lclient) *lreq {
	var r *lreq
	if n := len(l.free); n > 0 {
		r = l.free[n-1]
		l.free = l.free[:n-1]
	} else {
		r = &lreq{}
	}
	r.c = c
	r.start = l.nowNano
	return r
}

// release returns r to the pool.
func (l *loop) release(r *lreq) {
	if r.refc != nil {
		l.chunks.unref(r.refc)
		r.ref, r.refc = nil, nil
	}
	if r.rawc != nil {
		l.chunks.unref(r.rawc)
		r.raw, r.rawc = nil, nil
	}
	if r.slowEntry {
		return
	}
	raw, reply, keyPos, vals := r.raw[:0], r.reply[:0], r.keyPos[:0], r.vals[:0]
	if cap(raw) > 4<<10 {
		raw = nil
	}
	if cap(reply) > 16<<10 {
		reply = nil
	}
	*r = lreq{raw: raw, reply: reply, keyPos: keyPos, vals: vals}
	if len(l.free) < maxFreeReqs {
		l.free = append(l.free, r)
	}
}

// maxFreeReqs bounds the loop's pool of requests. Everything in flight comes back to it
// (500 clients pipelining 16 MSETs of 10 keys hold 88,000 requests and parts); beyond
// keepFreeReqs, tick lets an eighth of the excess go every tick once the load is gone.
const (
	maxFreeReqs  = 1 << 17
	keepFreeReqs = 4096
)

// trimFree lets part of an idle excess of pooled requests go (tick).
func (l *loop) trimFree() {
	if n := len(l.free); n > keepFreeReqs {
		keep := n - max((n-keepFreeReqs)/8, 1)
		clear(l.free[keep:])
		l.free = l.free[:keep]
	}
}

// reqRing is a FIFO of requests. Its array's length is a power of two; a burst's array is
// kept while it is used and given back by trim, not each time the ring empties (a backend's
// ring empties between the passes of a steady pipelined load, and regrowing it was 90 % of
// the loop's allocations).
type reqRing struct {
	buf  []*lreq
	head int
	n    int
	peak int // most requests held since the last trim
}

// keepRing is the array length a ring keeps however long it is idle.
const keepRing = 64

func (q *reqRing) len() int { return q.n }

func (q *reqRing) push(r *lreq) {
	if q.n == len(q.buf) {
		nb := make([]*lreq, max(8, 2*len(q.buf)))
		for i := 0; i < q.n; i++ {
			nb[i] = q.buf[(q.head+i)&(len(q.buf)-1)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.n)&(len(q.buf)-1)] = r
	q.n++
	if q.n > q.peak {
		q.peak = q.n
	}
}

func (q *reqRing) peek() *lreq {
	if q.n == 0 {
		return nil
	}
	return q.buf[q.head]
}

func (q *reqRing) pop() *lreq {
	if q.n == 0 {
		return nil
	}
	r := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) & (len(q.buf) - 1)
	q.n--
	if q.n == 0 {
		q.head = 0
	}
	return r
}

// trim gives back an array longer than keepRing when it was less than a quarter full since
// the last trim (once per loop tick) and is empty now.
func (q *reqRing) trim() {
	if q.n == 0 && len(q.buf) > keepRing && q.peak*4 <= len(q.buf) {
		q.buf, q.head = nil, 0
	}
	q.peak = q.n
}

// lbackend is a loop's pipelined connection to one cluster node.
type lbackend struct {
	l  *loop
	n  *node
	fd int // -1: not connected

	dialing  bool
	dialFrom int64 // when the dial in progress started
	nextDial int64 // no new dial before (backoff after a failure)
	backoff  time.Duration

	wchain        // commands to write (outchain.go)
	outPeak   int // most bytes out held in the last second (trimOut)
	trimTicks int
	queuedOff int64 // bytes ever queued on this connection
	written   int64 // bytes ever written
	inflight  reqRing

	rc   *chunk // the chunk replies are read into (nil: none yet, or given back when empty)
	rlen int    // bytes in rc not yet handled, from its start
	need int

	lastProgress int64
	wantWrite    bool
	dirty        bool
	parked       bool // moved aside while its node runs a script (busypark.go)
	rtt          *histo
	priv         *privState // a private connection, bound to one client at a time (private.go)
}

// askingCmd precedes a command sent after an ASK redirection.
var askingCmd = []byte("*1\r\n$6\r\nASKING\r\n")

// sendExt queues a slow-path request on the loop's connection to n (run on the loop; the
// session's goroutine posts it, sendNode). The command shares the connection, and so the
// order, of the fast path's commands to n; its reply or its failure completes r, and the
// session follows redirections and retries itself.
func (l *loop) sendExt(n *node, r *request) {
	b := l.backend(n)
	if p := l.parkedFor(n, r.owner); p != nil {
		b = p // behind the session's commands waiting for a script (busypark.go)
	}
	if r.asking {
		b.enqueue(&lreq{raw: askingCmd, slowEntry: true, start: l.nowNano})
	}
	b.enqueue(&lreq{ext: r, raw: r.raw, slot: r.slot, slowEntry: true, start: l.nowNano})
}

// extDone completes the slow-path request of q with a reply (copied: rep is the
// connection's read buffer) or a failure.
func (l *loop) extDone(q *lreq, rep []byte, err error) {
	r := q.ext
	if r == nil {
		return // ASKING's reply
	}
	if err == nil {
		rep = append([]byte(nil), rep...)
	}
	r.complete(rep, err)
}

// trimOut lets a large output buffer go once a second passed in which it was never more
// than a quarter full (a burst is over); under steady load it is kept and reused (tick).
func (b *lbackend) trimOut() {
	if b.trimTicks++; b.trimTicks < trimOutTicks {
		return
	}
	if cap(b.out) > 256<<10 && b.outPeak < cap(b.out)/4 && len(b.out) == 0 {
		b.out = nil
	}
	b.outPeak, b.trimTicks = 0, 0
}

// trimOutTicks is how many ticks (1 s) a backend's output buffer must stay mostly unused
// before it is let go.
const trimOutTicks = 10

// enqueue queues r's command for the node.
func (b *lbackend) enqueue(r *lreq) {
	l := b.l
	r.node = b.n
	if b.fd < 0 && !b.dialing {
		if l.nowNano < b.nextDial {
			b.l.failReq(r, fmt.Errorf("%w: %s unreachable (reconnecting)", ErrNotSent, b.n.addr))
			return
		}
		b.dial()
	}
	r.sendOff = b.queuedOff
	r.sent = l.nowNano
	if r.rawc != nil {
		b.queueRef(l, r.raw, r.rawc) // a long command: written from the loop's arena (chunk.go)
	} else {
		b.out = append(b.out, r.raw...)
	}
	b.queuedOff += int64(len(r.raw))
	if b.inflight.len() == 0 {
		b.lastProgress = l.nowNano
	}
	b.inflight.push(r)
	if b.priv == nil { // a private connection's commands wait as long as the client wants
		b.n.loopPending.Add(1)
	}
	b.markDirty()
}

func (b *lbackend) markDirty() {
	if !b.dirty && b.fd >= 0 {
		b.dirty = true
		b.l.dirtyB = append(b.l.dirtyB, b)
	}
}

// dial connects in a goroutine (with the hand-shake of dialReady) and hands the
// descriptor to the loop.
func (b *lbackend) dial() {
	b.dialing = true
	b.dialFrom = b.l.nowNano
	l, c, addr, priv := b.l, b.n.c, b.n.addr, b.priv
	go func() {
		ctx, cancel := context.WithTimeout(c.ctx, 2*c.conf().BackendConnectTimeout+c.conf().BackendReadTimeout)
		defer cancel()
		fd := -1
		var id int64
		conn, err := c.dialReady(ctx, addr)
		if err == nil && priv != nil { // private.go: its id on the node, for CLIENT UNBLOCK
			if id, err = nodeClientID(conn, c.conf().BackendReadTimeout); err != nil {
				conn.Close()
			}
		}
		if err == nil {
			fd, err = loopFD(conn)
		}
		l.post(func() {
			if priv != nil {
				priv.nodeID = id
			}
			b.dialed(fd, err)
		})
	}()
}

func (b *lbackend) dialed(fd int, err error) {
	b.dialing = false
	l, n := b.l, b.n
	if b.priv != nil && b.priv.dead { // closed while it dialed (private.go)
		closeFD(fd)
		return
	}
	if err == nil && l.stopping {
		unix.Close(fd)
		err = errShuttingDown
	}
	if err != nil {
		if !n.down.Swap(true) {
			n.c.log.Warn("cluster node unreachable", "node", n.addr, "err", err)
			n.c.requestRefresh(refreshConnLoss)
		}
		n.c.metrics.backendErrors.WithLabelValues(n.addr, "connect").Inc()
		if !l.stopping {
			n.c.markSuspect(n, "connect")
		}
		b.backoff = min(max(2*b.backoff, 50*time.Millisecond), 2*time.Second)
		b.nextDial = l.nowNano + int64(b.backoff)
		b.failAll(fmt.Errorf("%w: %s unreachable: %v", ErrNotSent, n.addr, err), nil, "")
		return
	}
	if n.down.Swap(false) {
		n.c.log.Info("cluster node reachable again", "node", n.addr)
	}
	n.c.nodeAnswered(n)
	b.backoff = 0
	if err := l.register(fd, b, false); err != nil {
		unix.Close(fd)
		b.failAll(fmt.Errorf("%w: %s: %v", ErrNotSent, n.addr, err), nil, "")
		return
	}
	b.fd = fd
	if b.priv == nil {
		n.c.metrics.backendConns.WithLabelValues(n.addr).Inc()
	}
	b.markDirty()
}

// flush writes the queued commands.
func (b *lbackend) flush() {
	if b.fd < 0 || b.outLen() == 0 {
		return
	}
	b.outPeak = max(b.outPeak, len(b.out))
	n, err := b.writeTo(b.l, b.fd)
	b.written += int64(n)
	if b.priv != nil {
		b.privWritten() // private.go: its client blocks once the command is written
	}
	if b.outLen() == 0 {
		b.outOff = 0
		b.out = b.out[:0]
		if b.wantWrite {
			b.wantWrite = false
			b.l.p.Set(b.fd, true, false)
		}
		return
	}
	if err != nil && err != unix.EAGAIN && err != unix.EINTR {
		b.failAll(errFateUnknown, err, "connection_lost")
		return
	}
	if len(b.segs) == 0 && b.outOff >= len(b.out)/2 {
		// The node reads slower than commands come: move the rest to the front rather
		// than grow the buffer behind bytes already written.
		b.out = b.out[:copy(b.out, b.out[b.outOff:])]
		b.outOff = 0
	}
	if !b.wantWrite {
		b.wantWrite = true
		b.l.p.Set(b.fd, true, true)
	}
}

func (b *lbackend) writable() { b.flush() }

// readable reads replies into the connection's chunk and hands each to the oldest request
// in flight; long replies go to their clients by reference (chunk.go).
func (b *lbackend) readable() {
	if b.fd < 0 {
		return
	}
	l := b.l
	if b.rc == nil || len(b.rc.buf)-b.rlen < 4<<10 || b.need > len(b.rc.buf) {
		b.moveChunk(readChunkSize(b.rlen, b.need))
	}
	n, err := sysRead(b.fd, b.rc.buf[b.rlen:])
	if n <= 0 {
		if err == unix.EAGAIN || err == unix.EINTR {
			return
		}
		if err == nil {
			err = fmt.Errorf("connection closed by %s", b.n.addr)
		}
		b.failAll(errFateUnknown, err, "connection_lost")
		return
	}
	b.rlen += n
	if b.n.suspect.Load() {
		b.n.c.nodeAnswered(b.n)
	}
	if b.rlen < b.need {
		return
	}
	b.need = 0
	rc := b.rc
	l.repChunk = rc
	defer func() { l.repChunk = nil }()
	off := 0
	for off < b.rlen {
		end, need, err := resp.FrameReply(rc.buf[off:b.rlen])
		if err != nil {
			b.failAll(errFateUnknown, err, "connection_lost")
			return
		}
		if end == 0 {
			b.need = need
			break
		}
		rep := rc.buf[off : off+end : off+end]
		off += end
		if rep[0] == '-' {
			if reason, ok := executingReply(rep); ok {
				b.n.c.sawExecuting(b.n, reason) // busy.go
			}
		}
		if b.priv != nil && b.priv.push != nil && b.inflight.len() == 0 {
			b.lastProgress = l.nowNano
			b.priv.push.msg(rep) // a subscription's message or confirmation (pubsub_link.go)
			if b.fd < 0 {
				return
			}
			continue
		}
		r := b.inflight.pop()
		if r == nil {
			b.failAll(errFateUnknown, fmt.Errorf("reply without a request from %s", b.n.addr), "connection_lost")
			return
		}
		b.lastProgress = l.nowNano
		if b.priv == nil { // not a blocked command's wait: no round-trip time
			b.n.loopPending.Add(-1)
			if b.rtt == nil {
				b.rtt = l.stats.rtt[b.n.addr]
				if b.rtt == nil {
					b.rtt = &histo{}
					l.stats.rtt[b.n.addr] = b.rtt
				}
			}
			b.rtt.observe(latencyBuckets, float64(l.nowNano-r.sent)/1e9)
		}
		switch {
		case b.priv != nil:
			l.privReply(b, r, rep) // private.go
		case r.c != nil:
			r.c.backendReply(r, rep)
		default:
			l.extDone(r, rep, nil)
		}
		if b.fd < 0 { // the handler (a resumed client's commands) may not fail b, but stop if it did
			return
		}
	}
	if b.parked && b.inflight.len() == 0 {
		defer l.closeParked(b) // busypark.go
	}
	if off == 0 {
		return
	}
	switch {
	case rc.refs > 1:
		// Clients reference replies in the chunk: the rest goes to a new one.
		b.moveChunkFrom(off, readChunkSize(b.rlen-off, b.need))
	case off < b.rlen:
		b.rlen = copy(rc.buf, rc.buf[off:b.rlen])
	default:
		b.rlen = 0
		b.dropChunk() // back to the pool while the connection is quiet
	}
}

// moveChunk moves the unhandled bytes to a new chunk of at least size bytes.
func (b *lbackend) moveChunk(size int) { b.moveChunkFrom(0, size) }

// moveChunkFrom moves the unhandled bytes from off on to a new chunk of at least size
// bytes (none while there are none: the next read takes one) and lets the old one go.
func (b *lbackend) moveChunkFrom(off, size int) {
	left := b.rlen - off
	var nc *chunk
	if left > 0 || off == 0 {
		nc = b.l.chunks.get(max(size, left))
		if left > 0 {
			copy(nc.buf, b.rc.buf[off:b.rlen])
		}
	}
	b.dropChunk()
	b.rc, b.rlen = nc, left
}

// dropChunk lets the connection's chunk go (to the pool once no client references it).
func (b *lbackend) dropChunk() {
	if b.rc != nil {
		b.l.chunks.unref(b.rc)
		b.rc = nil
	}
}

// checkTimeout fails the connection when commands wait longer than timeout for a reply,
// and marks the node suspect when they wait longer than suspectAfter (for a reply, or for
// a connection that is still being set up).
func (b *lbackend) checkTimeout(timeout, suspectAfter time.Duration) {
	b.trimOut()
	b.inflight.trim()
	if b.inflight.len() == 0 {
		return
	}
	now := b.l.nowNano
	waiting := b.fd >= 0 && now-b.lastProgress > int64(suspectAfter) || b.dialing && now-b.dialFrom > int64(suspectAfter)
	if waiting {
		b.n.c.probeExecuting(b.n, now) // busy.go: executing or paused is not gone
		if b.fd >= 0 && now-b.n.scriptAt.Load() < int64(b.n.c.holdWindow(timeout)) {
			b.l.park(b) // busypark.go: waits behind a script; new commands get -BUSY
		}
	}
	held := waiting && b.n.c.holdsCommands(b.n, now, timeout)
	if b.fd >= 0 && now-b.lastProgress > int64(timeout) {
		if busy := b.l.s.conf().BackendBusyTimeout; held && busy > timeout {
			if now-b.lastProgress <= int64(busy) {
				return
			}
			b.failAll(errBusyTimeout, fmt.Errorf("no reply within backend-busy-timeout %v", busy), "timeout")
			return
		}
		b.failAll(errBackendTimeout, fmt.Errorf("no reply within %v", timeout), "timeout")
		return
	}
	if b.n.suspect.Load() || held {
		return
	}
	if waiting {
		b.n.c.markSuspect(b.n, "slow")
	}
}

// failAll closes the connection and fails every queued command: with ErrNotSent if its
// bytes were never written, else with sentErr (its fate is unknown). reason, when set, is
// the backend_errors_total kind.
func (b *lbackend) failAll(sentErr, cause error, reason string) {
	n := b.n
	if b.priv != nil {
		b.l.privGone(b) // private.go: never reused
	}
	if b.fd >= 0 {
		b.l.unregister(b.fd)
		b.fd = -1
		if b.priv == nil {
			n.c.metrics.backendConns.WithLabelValues(n.addr).Dec()
		}
	}
	b.wantWrite, b.dirty = false, false
	notSent := fmt.Errorf("%w: connection to %s lost", ErrNotSent, n.addr)
	failed := 0
	for b.inflight.len() > 0 {
		r := b.inflight.pop()
		if b.priv == nil {
			n.loopPending.Add(-1)
		}
		err := notSent
		if r.sendOff < b.written {
			err = sentErr
			failed++
		}
		if errors.Is(sentErr, ErrNotSent) {
			err = sentErr
		}
		b.failReq(r, err)
	}
	b.releaseSegs(b.l)
	b.out, b.outOff, b.queuedOff, b.written = b.out[:0], 0, 0, 0
	b.rlen, b.need = 0, 0
	b.dropChunk()
	if reason == "" {
		return
	}
	n.c.metrics.backendErrors.WithLabelValues(n.addr, reason).Inc()
	if failed > 0 || reason == "timeout" {
		n.c.log.Warn("backend connection failed", "node", n.addr, "reason", reason, "in_flight_failed", failed, "err", cause)
	} else {
		n.c.log.Debug("backend connection closed", "node", n.addr, "err", cause)
	}
	if b.l.stopping {
		return
	}
	if failed > 0 || reason == "timeout" {
		n.c.markSuspect(n, reason)
	}
	n.c.requestRefresh(refreshConnLoss)
}

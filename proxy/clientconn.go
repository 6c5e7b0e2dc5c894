package proxy

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/tidwall/redcon"
	"golang.org/x/sys/unix"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// lclient is a client connection served by a loop. Its commands are read from the loop's
// shared read buffer (only an incomplete command is kept, in in), routed on the fast path
// (fast.go) or run on the slow path, and answered strictly in order through fifo.
type lclient struct {
	l  *loop
	fd int
	ss *session // identity and state shared with the slow path

	in      []byte       // bytes read but not yet parsed (an incomplete command), in inc when long
	inc     *chunk       // the chunk in lies in (a long command: its commands are kept from there)
	g       resp.Scanner // request limits, checked as bytes arrive
	protoEr string       // a protocol error after the bytes in in: answered after them
	fifo    reqRing
	wchain        // replies to write (outchain.go)
	held    int64 // bytes of completed replies waiting for earlier ones
	refKept bool  // listed in loop.refClients (unpinHeld)

	simple     bool // the session state allows the fast path
	authed     bool // the session is authenticated (its request limits, authlimits.go)
	resp3      bool // HELLO 3: fast-path replies get RESP3 nulls (resp3Nulls)
	busy       bool // a slow-path command is running: nothing after it is started
	resolving  int  // redirections being followed by the slow path
	lastActive int64
	softSince  int64
	wrote      []*node // nodes written to, also recorded in the session (for WAIT)
	cmd        string  // the last command answered (CLIENT LIST cmd, clientstats.go)

	// resolveTail is closed when the last resolution started has finished: resolutions
	// run one after the other, in the client's order (resolveSlow).
	resolveTail chan struct{}

	processing bool       // in process: replies delivered meanwhile must not start it again
	paused     bool       // process stopped at client-pipeline-depth (or at a barrier)
	barrier    bool       // process stopped until every earlier command is answered (ordered)
	order      routeOrder // the map its commands in flight were routed by (ordered)

	reading, wantWrite bool
	dirty              bool
	draining           bool // close at the next request boundary (drainIdle), once everything is answered
	eof                bool // the client closed its side
	quitting           bool // QUIT or a protocol error: close once written
	closed             bool
	bridged            bool     // a TLS client: never handed over (handoff.go)
	tls                *loopTLS // a TLS client served by the loop (tlsloop.go); nil: plain or bridged
	hold               bool     // not read: a planned handover holds its next command (hold.go)

	// drainSince is when the drain began (loop clock): reading stops drainReadWindow later.
	drainSince int64
}

// backlogLimit is how many unparsed bytes a client may have before the loop stops reading
// it (a slow-path command is running, or the pipeline depth is reached).
const backlogLimit = 256 << 10

// outPause is how many written but unsent reply bytes make the loop stop reading the
// client's commands until the client reads: a reply written counts against the pipeline
// like one still awaited.
const outPause = 256 << 10

// accept registers a new client on the loop (run on the loop).
func (l *loop) accept(c *lclient) {
	c.lastActive = l.nowNano
	c.reading = true
	c.refreshSimple()
	if err := c.register(); err != nil {
		l.s.log.Warn("event loop: register client", "err", err)
		unix.Close(c.fd)
		c.closed = true
		c.ss.cancel()
		go c.ss.finalize(c)
		return
	}
	l.clients[c] = struct{}{}
	if c.ss.ep != nil && c.ss.ep.holding() {
		c.setHold(true) // accepted during a planned handover's hold (hold.go)
	}
}

// wroteTo records that the client wrote to n and reports whether it had before.
func (c *lclient) wroteTo(n *node) bool {
	for _, w := range c.wrote {
		if w == n {
			return true
		}
	}
	if len(c.wrote) < 32 {
		c.wrote = append(c.wrote, n)
	}
	return false
}

// refreshSimple recomputes whether the fast path may serve the next command: not while a
// transaction, WATCH, Pub/Sub or CLIENT REPLY OFF/SKIP is in effect, before AUTH, or for
// read-only users (their commands are checked one by one), nor while the client tracks
// keys (CLIENT TRACKING: tracking.go records its reads on the slow path).
func (c *lclient) refreshSimple() {
	ss := c.ss
	c.simple = ss.authed && !ss.readonly && ss.rightsCfg == c.l.s.conf() && !ss.tx.inMulti && ss.tx.watchConn == nil &&
		(ss.ps == nil || !ss.ps.subscribed()) && !ss.replyOff && !ss.skipNext && ss.track == nil && !ss.monitor.Load()
	c.resp3 = ss.resp3.Load()
	c.authed = ss.authed
}

func (c *lclient) markDirty() {
	if !c.dirty && !c.closed {
		c.dirty = true
		c.l.dirtyC = append(c.l.dirtyC, c)
	}
}

func (c *lclient) readable() {
	if c.closed || !c.reading {
		return
	}
	l := c.l
	buf := l.rbuf
	// A long command being read goes straight into its chunk (chunk.go: appendIn).
	direct := c.inc != nil && cap(c.in)-len(c.in) >= inChunkMin
	if direct {
		buf = c.in[len(c.in):cap(c.in)]
	}
	n, err := c.clientRead(buf)
	if n <= 0 {
		if err == unix.EAGAIN || err == unix.EINTR {
			return
		}
		c.peerClosed()
		return
	}
	l.stats.bytesIn += uint64(n)
	c.lastActive = l.nowNano
	cfg := l.s.conf()
	g := &c.g
	g.SetLimits(requestLimits(cfg, c.authed))
	data := buf[:n]
	completed := false // a command ended in these bytes (readable)
	for off := 0; off < n; {
		k := g.Scan(data[off:])
		completed = completed || g.LastEnd() >= 0
		off += k
		if g.Err() != nil {
			data = data[:off]
			c.protoEr = g.Err().Error()
			c.reading = false
			c.updateInterest()
			break
		}
	}
	if direct {
		c.in = c.in[:len(c.in)+len(data)]
		data = c.in
		if !completed && c.protoEr == "" {
			c.updateInterest()
			return
		}
	} else if !completed && c.protoEr == "" {
		c.keepPartial(data)
		return
	} else if len(c.in) > 0 {
		c.appendIn(data)
		data = c.in
	}
	l.parseWork += int64(len(data))
	c.process(data)
}

// process handles the complete commands in data (the read buffer or c.in) and keeps the
// rest in c.in.
func (c *lclient) process(data []byte) {
	depth := c.l.s.conf().ClientPipelineDepth
	monitored := c.l.s.mon.on.Load() // the one cost of MONITOR while none is attached
	cmds := 0
	starved := false // everything complete in data was handled
	c.processing = true
	for !c.busy && !c.quitting && !c.closed {
		if c.fifo.len() >= depth || c.outLen() > outPause {
			c.paused = true
			break
		}
		if len(data) == 0 {
			starved = true
			break
		}
		before := data
		args, raw, left, perr := resp.NextCommand(data, c.l.argsBuf[:0])
		if perr != "" {
			c.protoEr = perr
			data, starved = nil, true
			break
		}
		if args == nil && len(left) == len(data) {
			starved = true // incomplete
			break
		}
		if raw != nil {
			c.l.argsBuf = args[:0]
		}
		data = left
		if len(args) == 0 {
			continue
		}
		if !c.dispatch(args, raw) {
			// It must not overtake earlier commands: kept, handled once they are answered.
			data = before
			c.paused, c.barrier = true, true
			break
		}
		if monitored {
			c.l.s.monitorFeed(c.ss, c.authed, args)
		}
		cmds++
	}
	c.processing = false
	if cmds > 0 {
		c.l.stats.pipeline.observe(pipelineBuckets, float64(cmds))
	}
	if starved && c.protoEr != "" && !c.closed {
		// Every command before the violation is handled: answer the error after them and
		// close. The rest of the bad command is dropped.
		data = nil
		c.l.s.metrics.protoErrors.Inc()
		c.l.s.log.Debug("client protocol error", "client_id", c.ss.id, "err", c.protoEr)
		r := c.l.getReq(c)
		r.slowEntry = true
		c.fifo.push(r)
		c.deliver(r, resp.ErrorReply("ERR "+c.protoEr))
		c.protoEr = ""
		c.quitting = true
	}
	// Keep what is left (owned: data may be the loop's read buffer).
	c.keepIn(data)
	c.updateInterest()
}

// resume handles commands kept while the client was paused.
func (c *lclient) resume() {
	if len(c.in) > 0 || c.protoEr != "" {
		c.processSafe(c.in) // c.process, a panic closing only this client (panics.go)
	} else {
		c.updateInterest()
	}
}

// updateInterest reads the client only while it may send more, and waits for
// writability only while replies are pending.
func (c *lclient) updateInterest() {
	if c.closed {
		return
	}
	// A command still incomplete is always read on (the guard bounds its size); complete
	// commands waiting behind a slow one are bounded by backlogLimit; at the pipeline depth
	// nothing more is read until replies are written.
	read := !c.quitting && !c.eof && c.protoEr == "" && !c.paused && !c.hold && !c.drainReadDone() &&
		(!c.busy || len(c.in) < backlogLimit)
	write := c.outPending() > 0
	if read != c.reading || write != c.wantWrite {
		c.reading, c.wantWrite = read, write
		c.setInterest(read, write)
	}
}

func (c *lclient) peerClosed() {
	c.eof = true
	if c.busy {
		// The client went away while a blocking command (or another slow one) runs:
		// cancel it, which also closes its dedicated connection.
		c.ss.cancel()
	}
	if c.fifo.len() == 0 && c.outPending() == 0 {
		c.close()
		return
	}
	c.updateInterest()
}

// write appends reply bytes for the client.
func (c *lclient) write(b []byte) {
	if c.out == nil {
		c.out = c.l.outBuf()
	}
	c.out = append(c.out, b...)
	c.l.stats.bytesOut += uint64(len(b))
	c.markDirty()
}

func (l *loop) outBuf() []byte {
	if n := len(l.outBufs); n > 0 {
		b := l.outBufs[n-1]
		l.outBufs = l.outBufs[:n-1]
		return b
	}
	return make([]byte, 0, 16<<10)
}

// deliver hands r's reply to the client in order and releases r. A reply of at least
// refMin bytes that lies in the chunk of the node connection being read is queued, or held,
// by reference (chunk.go); any other is copied.
func (c *lclient) deliver(r *lreq, rep []byte) {
	if c.closed {
		c.l.release(r)
		return
	}
	ch := c.l.refChunk(rep)
	if c.fifo.peek() == r {
		c.fifo.pop()
		if ch != nil {
			c.writeRef(rep, ch)
		} else {
			c.write(rep)
		}
		c.l.release(r)
		c.advance()
	} else {
		if ch != nil {
			ch.refs++
			r.ref, r.refc = rep, ch
			c.l.pinned = append(c.l.pinned, r)
		} else {
			r.reply = append(r.reply[:0], rep...)
		}
		r.done = true
		c.held += int64(len(rep))
	}
	c.checkOutput()
}

// advance writes the completed replies at the head of the queue.
func (c *lclient) advance() {
	for {
		r := c.fifo.peek()
		if r == nil || !r.done {
			break
		}
		c.fifo.pop()
		if r.refc != nil {
			c.writeRef(r.ref, r.refc)
			c.held -= int64(len(r.ref))
		} else {
			c.write(r.reply)
			c.held -= int64(len(r.reply))
		}
		c.l.release(r)
	}
	c.maybeResume()
}

// maybeResume continues a client paused at the pipeline depth, by unsent replies or at a
// barrier.
func (c *lclient) maybeResume() {
	if !c.paused || c.processing {
		return
	}
	if c.barrier {
		if c.fifo.len() > 0 {
			return
		}
		c.barrier = false
	}
	if c.fifo.len() < c.l.s.conf().ClientPipelineDepth && c.outLen() <= outPause {
		c.paused = false
		if !c.busy {
			c.resume()
		}
	}
}

// flush writes the pending replies (end of a pass, or writable). What the socket does not
// take is kept in memory the client owns (detach).
func (c *lclient) flush() {
	if c.closed {
		return
	}
	wrote := 0
	// A draining client's last reply is corked: it leaves in one segment with the close, so
	// the client sees the close as it reads the reply and sends its next command on a new
	// connection, not into a socket about to close (or, after a planned handover, one the
	// new MASTER resets: hold.go).
	corked := c.draining && !c.hold && !c.bridged && c.outLen() > 0 && c.fifo.len() == 0 && !c.busy &&
		c.drainIdle() && setCork(c.fd, true) == nil
	if c.outPending() > 0 {
		n, err := c.clientWrite()
		wrote = n
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			c.close()
			return
		}
	}
	if c.outLen() == 0 {
		if c.out != nil {
			c.recycleOut(c.l)
			if c.unsentOut() == 0 {
				c.softSince = 0
			}
		}
	} else if wrote == 0 {
		c.unpin(c.l) // the client does not read: nothing of a node's stays with it
	} else {
		c.l.keepRefs(c) // it reads: its references may wait for the next pass (unpinHeld)
	}
	c.maybeResume()
	if c.fifo.len() == 0 && c.outPending() == 0 && !c.busy && (c.quitting || c.eof || c.draining && (c.drainIdle() || c.drainReadDone() && !c.paused)) {
		c.close()
		return
	}
	if corked {
		setCork(c.fd, false)
	}
	c.updateInterest()
}

func (c *lclient) writable() { c.flush() }

// pendingOut is what the proxy holds for the client.
func (c *lclient) pendingOut() int64 { return int64(c.outPending()) + c.held }

func (c *lclient) outputLimit() (lim config.OutputLimit, class string) {
	cfg := c.l.s.conf()
	if c.ss.inPubSub.Load() {
		return cfg.OutputLimitPubSub, "pubsub"
	}
	if c.ss.monitor.Load() {
		return cfg.OutputLimitPubSub, "monitor" // monitor.go
	}
	return cfg.OutputLimit, "normal"
}

// checkOutput applies the output-buffer limits (outputOver) to everything held for the
// client: by its loop and by its slow path.
func (c *lclient) checkOutput() {
	if c.closed {
		return
	}
	lim, class := c.outputLimit()
	held := c.pendingOut() + c.ss.out.bytes.Load()
	if why := outputOver(held, lim, &c.softSince, c.l.nowNano); why != "" {
		c.overflow(class, why, held)
	}
}

func (c *lclient) overflow(class, why string, held int64) {
	s := c.l.s
	s.metrics.outputLimitClosed.WithLabelValues(class).Inc()
	s.log.Warn("client output buffer limit reached; closing the client", "client_id", c.ss.id,
		"addr", c.ss.conn.RemoteAddr().String(), "class", class, "limit", why, "held_bytes", held)
	c.close()
	s.collectFreed(held)
}

// checkIdle closes a client idle for longer than timeout; blocked and subscribed clients
// are exempt, as in Redis.
func (c *lclient) checkIdle(timeout time.Duration) {
	if c.busy || c.hold || c.fifo.len() > 0 || c.l.nowNano-c.lastActive < int64(timeout) {
		return
	}
	if ps := c.ss.ps; ps != nil && ps.subscribed() || c.ss.monitor.Load() {
		return
	}
	c.close()
}

// drainReadWindow is how long a draining client is still read from: long enough for
// what it sent before the drain to arrive, short enough that a client that never stops
// sending (pipelining) does not hold the drain open until its grace period.
const drainReadWindow = 100 * time.Millisecond

// drainReadDone reports whether a draining client is no longer read from: what it sent
// later than drainReadWindow into the drain is not read, and a command left incomplete
// in the buffer is dropped (as before a drain was read at all).
func (c *lclient) drainReadDone() bool {
	return c.draining && !c.hold && c.l.nowNano-c.drainSince >= int64(drainReadWindow)
}

// drainIdle reports whether a draining client is between two requests: nothing of a
// command is buffered, not even unread bytes in the socket. A request that reached the
// proxy before the drain is answered, never dropped: closing a socket with unread data
// resets the connection, and the client's command would fail. (A client that goes on
// sending is closed by the drain's grace period.)
func (c *lclient) drainIdle() bool {
	return len(c.in) == 0 && !c.inputWaiting()
}

// drain closes the client at its next request boundary: what it has sent is answered,
// then the connection is closed while it is idle, so it reconnects without a failed
// command.
func (c *lclient) drain() {
	if c.closed {
		return
	}
	c.draining = true
	c.drainSince = c.l.nowNano
	c.flush()
}

// close closes the connection at once; replies still to come are dropped.
func (c *lclient) close() {
	if c.closed {
		return
	}
	c.closed = true
	l := c.l
	c.closeTransport()
	delete(l.clients, c)
	for c.fifo.len() > 0 {
		r := c.fifo.pop()
		if r.done {
			l.release(r)
		}
		// Others are still referenced by a backend or the slow path, which release them.
	}
	c.releaseSegs(l)
	c.out, c.outOff = nil, 0
	c.keepIn(nil)
	c.ss.cancel()
	if !c.busy {
		go c.ss.finalize(c)
	}
}

// runSlow runs one command on the slow path: a goroutine executes it with the session
// machinery and posts the reply back. Nothing
// after it is started until it is done, so the session state it changes is seen by the
// next command.
func (c *lclient) runSlow(args [][]byte, raw []byte) {
	r := &lreq{c: c, slowEntry: true, start: c.l.nowNano}
	c.fifo.push(r)
	c.busy = true
	args2 := make([][]byte, len(args))
	for i, a := range args {
		args2[i] = append([]byte{}, a...)
	}
	raw2 := resp.AppendCommand(nil, args2...)
	if raw != nil && raw[0] == '*' {
		raw2 = append(raw2[:0], raw...)
	}
	ss, l := c.ss, c.l
	go func() {
		defer c.recoverSlow(r)
		or := ss.newRequest(args2, raw2)
		reply := ss.finish(or)
		noReply := ss.applyReplyMode(or)
		ss.releaseReq(or)
		quit := or.slot == slotQuit
		// What the loop accounts the command by (account, as for every command).
		label, redirected, node := commandLabel(ss.s.cl.cmds.Load(), or), or.redirected, or.node
		cmdName := ss.s.fullCommandName(args2) // CLIENT LIST cmd
		protoErr := len(or.args) == 0
		l.post(func() {
			if !protoErr {
				r.label, r.redirected, r.node, r.raw = label, redirected, node, raw2
				c.account(r, reply)
				c.cmd = cmdName
			}
			c.slowDone(r, reply, noReply, quit)
		})
	}()
}

func (c *lclient) slowDone(r *lreq, reply []byte, noReply, quit bool) {
	c.busy = false
	if c.closed {
		go c.ss.finalize(c)
		return
	}
	if noReply {
		reply = nil
	}
	c.deliver(r, reply)
	if quit {
		c.quitting = true
	}
	c.refreshSimple()
	c.pullMsgs()
	c.resume()
	c.markDirty()
}

// pullMsgs writes the Pub/Sub messages queued by the subscription relays (not while a
// slow command runs: it may be collecting subscription confirmations from the same queue).
func (c *lclient) pullMsgs() {
	if c.closed || c.busy {
		return
	}
	msgs := c.ss.pending.takeAll()
	took := 0
	defer func() { c.l.noteClientMem(took) }()
	for _, m := range msgs {
		took += len(m)
		if len(m) >= refMin {
			c.writeOwned(m) // the relay's own copy: queued as it is
		} else {
			c.write(m)
		}
		c.ss.releaseOut(int64(len(m)))
	}
	if len(msgs) > 0 {
		c.checkOutput()
	}
}

// resolveSlow follows a redirection (or retries a command that was not sent) on the slow
// path; the client goes on meanwhile, and the reply takes its place in order. A client's
// resolutions run one after the other, and while any runs its next commands queue behind
// it (errBehind, see send): a SET and the GET after it that both got MOVED (or looped
// between two nodes) reach the new owner in that order.
func (c *lclient) resolveSlow(r *lreq, rep []byte, err error) {
	or, perr := r.resolution(rep, err)
	if perr != nil {
		c.complete(r, resp.ErrorReply("ERR proxy: "+perr.Error()))
		return
	}
	ss, l := c.ss, c.l
	c.resolving++
	prev, done := c.resolveTail, make(chan struct{})
	c.resolveTail = done
	go func() {
		if prev != nil {
			<-prev
		}
		var out []byte
		if err == errBehind {
			or.err, or.done, or.node = nil, nil, nil
			out = ss.call(or)
		} else {
			out = ss.await(or)
		}
		close(done)
		ss.releaseReq(or)
		redirected := or.redirected
		l.post(func() {
			c.resolving--
			r.redirected = r.redirected || redirected
			c.complete(r, out)
		})
	}()
}

// resolution is the slow path's request for r, which a node answered with rep (a
// redirection; nil when not sent, err): its own copies of the command and the reply, for
// the session to follow (await).
func (r *lreq) resolution(rep []byte, err error) (*request, error) {
	raw := append([]byte(nil), r.raw...)
	cmd, perr := redcon.Parse(raw)
	if perr != nil {
		return nil, perr
	}
	or := &request{info: r.info, args: cmd.Args, raw: raw, slot: r.slot, node: r.node, err: err,
		done: closedDone(), start: time.Unix(0, r.start)}
	if rep != nil {
		or.reply = append([]byte(nil), rep...)
	}
	return or, nil
}

// errBehind marks a command sent through the slow path only to keep its place behind a
// resolution in progress.
var errBehind = errors.New("queued behind a redirection")

// backendReply handles the reply of r from its node.
func (c *lclient) backendReply(r *lreq, rep []byte) {
	if rep[0] == '-' && resp.RedirectKind(rep) != resp.RedirNone {
		c.resolveSlow(r, rep, nil)
		return
	}
	c.complete(r, rep)
}

// failReq handles a command that got no reply: one never written goes to the slow path to
// be sent again, any other gets the error.
func (l *loop) failReq(r *lreq, err error) {
	if r.c == nil {
		l.extDone(r, nil, err) // the session decides whether to send it again
		return
	}
	if errors.Is(err, ErrNotSent) && !r.c.closed && !l.stopping {
		r.c.resolveSlow(r, nil, err) // never written: safe to send again
		return
	}
	r.c.complete(r, resp.ErrorReply("ERR proxy: "+err.Error()))
}

// complete finishes r (a command or a part of one) with its final reply.
func (c *lclient) complete(r *lreq, rep []byte) {
	if r.parent != nil {
		c.partDone(r, rep)
		return
	}
	c.account(r, rep)
	if r.resp3 {
		rep = resp3Nulls(rep)
	}
	c.deliver(r, rep)
}

// slowlogTickMin is the least number of slow log entries a loop records per tick.
const slowlogTickMin = 128

// account counts a command answered (on the fast path, or on the slow path: slowDone) and
// logs it if slow: the one place commands are counted, timed and slow-logged.
func (c *lclient) account(r *lreq, rep []byte) {
	l := c.l
	d := time.Duration(l.nowNano - r.start)
	result := "ok"
	if len(rep) > 0 && rep[0] == '-' {
		result = "error"
	} else if r.redirected {
		result = "redirected"
	}
	l.stats.command(r.label, result, d)
	c.cmd = r.label
	c.ss.lastCmd.Store(l.nowNano)
	if cfg := l.s.conf(); cfg.SlowlogMaxLen > 0 && d >= cfg.SlowlogSlowerThan && cfg.SlowlogSlowerThan >= 0 {
		// Under overload every command can be slow (the time includes queueing): a loop
		// logs at most as many per tick as the log holds, and at least slowlogTickMin
		// (so that a small log still shows the newest of an ordinary burst).
		if l.slowLogged >= max(cfg.SlowlogMaxLen, slowlogTickMin) {
			return
		}
		l.slowLogged++
		// The loop's own argument buffer: account may run while a command is dispatched.
		complete, args, _, _, err := redcon.ReadNextCommand(r.raw, l.slowArgs[:0])
		if err != nil || !complete {
			return
		}
		l.slowArgs = args[:0]
		node := ""
		if r.node != nil {
			node = r.node.addr
		}
		cname, addr := c.ss.slowlogClient()
		l.s.slow.add(cfg.SlowlogMaxLen, slowEntry{at: time.Unix(0, r.start), duration: d, args: args,
			client: addr, name: cname, node: node})
	}
}

// loopConn is the session's view of a loop client's connection: addresses, and Close and
// SetReadDeadline (drain) forwarded to the loop. The loop does the I/O.
type loopConn struct {
	c            *lclient
	local, remot netip.AddrPort // net.Addr values made on demand: an idle client holds less
}

var errLoopConn = errors.New("proxy: connection is served by an event loop")

func (lc *loopConn) Read([]byte) (int, error)         { return 0, errLoopConn }
func (lc *loopConn) Write([]byte) (int, error)        { return 0, errLoopConn }
func (lc *loopConn) LocalAddr() net.Addr              { return net.TCPAddrFromAddrPort(lc.local) }
func (lc *loopConn) RemoteAddr() net.Addr             { return net.TCPAddrFromAddrPort(lc.remot) }
func (lc *loopConn) SetDeadline(time.Time) error      { return nil }
func (lc *loopConn) SetWriteDeadline(time.Time) error { return nil }

// Close closes the client (from any goroutine).
func (lc *loopConn) Close() error {
	c := lc.c
	c.l.post(func() { c.close() })
	return nil
}

// SetReadDeadline with a time in the past drains the client (CloseClients).
func (lc *loopConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && !t.After(time.Now()) {
		c := lc.c
		c.l.post(func() { c.drain() })
	}
	return nil
}

// newLoopClient makes the session and the loop client for an accepted connection.
func (s *Server) newLoopClient(l *loop, fd int, local, remote netip.AddrPort) *lclient {
	c := &lclient{l: l, fd: fd}
	lc := &loopConn{c: c, local: local, remot: remote}
	ss := newSessionState(s, lc)
	ss.pending = newMsgQueue(func() { l.post(func() { c.pullMsgs() }) })
	c.ss = ss
	return c
}

// keepPartial keeps bytes read that completed no command: only their place in the
// unfinished command is remembered (by the scanner); they are parsed once it is whole.
func (c *lclient) keepPartial(data []byte) {
	c.appendIn(data) // owned: data may be the loop's read buffer
	c.updateInterest()
}

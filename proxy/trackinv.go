package proxy

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// tracker is the proxy's client-side caching state (tracking.go): the table of keys read by
// tracking clients, the tracking clients, and one invalidation connection per master.
type tracker struct {
	s  *Server
	mu sync.Mutex
	// keys maps a key to the ids of the clients that read it since its last invalidation.
	keys    map[string][]uint64
	clients map[uint64]*trackState // tracking clients
	bcast   map[uint64]*trackState // those in BCAST mode
	conns   map[*node]*invConn
	last    *slotMap // the map the invalidation connections follow
	started bool
	// slowInval delays each invalidation message read (tests: a slow invalidation path
	// must not let a client's reply overtake the invalidation). While it is set the frames
	// are handled, in order, by a goroutine (slowFrames), not by the loop, which goes on.
	slowInval  atomic.Int64
	slowActive atomic.Bool // slowQ is in use: frames go there, in order
	slowMu     sync.Mutex
	slowQ      []slowFrame
}

// slowFrame is a frame of an invalidation connection waiting for a slow invalidation path.
type slowFrame struct {
	ic  *invConn
	rep []byte
}

// invConn is the invalidation connection to one master: CLIENT TRACKING on BCAST, redirected
// to itself, subscribed to __redis__:invalidate. It also answers sync's PINGs. It is a
// service connection (svclink.go), read by the first event loop; a goroutine runs only
// while it is being made (connect).
type invConn struct {
	n         *node
	ctx       context.Context // ends when the node is no longer followed
	cancel    context.CancelFunc
	ready     chan struct{} // closed once the first connection is made (or given up)
	readyOnce sync.Once

	mu      sync.Mutex
	cur     *invLink // the connection while up
	up      bool
	pingOut bool
	waiting []chan struct{} // sync calls waiting for a PING not yet sent
	inPing  []chan struct{} // sync calls waiting for the PING sent
}

// invLink is one connection of an invConn (a new one after each loss).
type invLink struct {
	k    *subLink
	gone bool // closed (invConn.mu)
}

func newTracker(s *Server) *tracker {
	return &tracker{s: s, keys: map[string][]uint64{}, clients: map[uint64]*trackState{},
		bcast: map[uint64]*trackState{}, conns: map[*node]*invConn{}}
}

// enable switches tracking on for ss with n's settings (CLIENT TRACKING on: a client that
// already tracks keeps its table entries; BCAST prefixes accumulate).
func (t *tracker) enable(ss *session, n *trackState) {
	defer t.start() // after the client is registered: stopIfIdle cannot close what it needs
	t.mu.Lock()
	if old := ss.track; old != nil {
		seen := map[string]bool{}
		for _, p := range old.prefixes {
			seen[p] = true
		}
		for _, p := range n.prefixes {
			if !seen[p] {
				old.prefixes = append(old.prefixes, p)
			}
		}
		old.redirect, old.target, old.noloop = n.redirect, n.target, n.noloop
		t.mu.Unlock()
		return
	}
	ss.track = n
	t.clients[ss.id] = n
	if n.bcast {
		t.bcast[ss.id] = n
	}
	t.updateGauges()
	t.mu.Unlock()
}

// disable switches tracking off for ss (CLIENT TRACKING off, RESET, disconnect). Its table
// entries go lazily, as in Redis: a key is dropped when it is invalidated.
func (t *tracker) disable(ss *session) {
	if ss.track == nil {
		return
	}
	t.mu.Lock()
	ss.track = nil
	delete(t.clients, ss.id)
	delete(t.bcast, ss.id)
	t.updateGauges()
	t.mu.Unlock()
}

// clientCount returns the number of tracking clients (INFO tracking_clients).
func (t *tracker) clientCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.clients)
}

func (t *tracker) updateGauges() {
	t.s.metrics.track.clients.Set(float64(len(t.clients)))
	t.s.metrics.track.keys.Set(float64(len(t.keys)))
}

// add records that client id read keys. When the table is full (tracking-table-max-keys),
// keys are evicted, each sending its invalidation, as Redis does.
func (t *tracker) add(id uint64, keys [][]byte) {
	max := t.s.conf().TrackingTableMaxKeys
	var evicted map[uint64][][]byte
	t.mu.Lock()
	for _, k := range keys {
		ids, ok := t.keys[string(k)]
		if !ok {
			for max > 0 && len(t.keys) >= max {
				for ek, eids := range t.keys { // a random key, as Redis
					delete(t.keys, ek)
					if evicted == nil {
						evicted = map[uint64][][]byte{}
					}
					for _, c := range eids {
						evicted[c] = append(evicted[c], []byte(ek))
					}
					break
				}
			}
		}
		if !containsID(ids, id) {
			t.keys[string(k)] = append(ids, id)
		}
	}
	t.updateGauges()
	t.mu.Unlock()
	for c, ks := range evicted {
		t.deliver(c, ks, "table_full")
	}
}

// forget drops client id from keys (a NOLOOP client's own writes).
func (t *tracker) forget(id uint64, keys [][]byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		ids := t.keys[string(k)]
		for i, c := range ids {
			if c == id {
				ids = append(ids[:i:i], ids[i+1:]...)
				break
			}
		}
		if len(ids) == 0 {
			delete(t.keys, string(k))
		} else if ids != nil {
			t.keys[string(k)] = ids
		}
	}
	t.updateGauges()
}

func containsID(ids []uint64, id uint64) bool {
	for _, c := range ids {
		if c == id {
			return true
		}
	}
	return false
}

// invalidate handles keys a node reports changed: each client that read one, and each
// BCAST client whose prefixes match, gets an invalidation message.
func (t *tracker) invalidate(keys [][]byte, reason string) {
	out := map[uint64][][]byte{}
	t.mu.Lock()
	for _, k := range keys {
		if ids, ok := t.keys[string(k)]; ok {
			delete(t.keys, string(k))
			for _, c := range ids {
				out[c] = append(out[c], k)
			}
		}
		for id, ts := range t.bcast {
			if hasPrefix(k, ts.prefixes) {
				out[id] = append(out[id], k)
			}
		}
	}
	t.updateGauges()
	t.mu.Unlock()
	for c, ks := range out {
		t.deliver(c, ks, reason)
	}
}

// invalidateSlots invalidates the tracked keys of the slots for which in reports true
// (their node changed or is no longer watched); BCAST clients are flushed.
func (t *tracker) invalidateSlots(in func(slot int) bool, reason string) {
	out := map[uint64][][]byte{}
	t.mu.Lock()
	for k, ids := range t.keys {
		if in(command.KeySlot([]byte(k))) {
			delete(t.keys, k)
			for _, c := range ids {
				out[c] = append(out[c], []byte(k))
			}
		}
	}
	var bc []uint64
	for id := range t.bcast {
		bc = append(bc, id)
	}
	t.updateGauges()
	t.mu.Unlock()
	for c, ks := range out {
		t.deliver(c, ks, reason)
	}
	for _, id := range bc {
		t.deliver(id, nil, reason)
	}
}

// flushAll sends every tracking client the null invalidation (FLUSHALL/FLUSHDB on a node)
// and drops the tracked keys of that node's slots (in: nil, every key).
func (t *tracker) flushAll(in func(slot int) bool, reason string) {
	t.mu.Lock()
	for k := range t.keys {
		if in == nil || in(command.KeySlot([]byte(k))) {
			delete(t.keys, k)
		}
	}
	ids := make([]uint64, 0, len(t.clients))
	for id := range t.clients {
		ids = append(ids, id)
	}
	t.updateGauges()
	t.mu.Unlock()
	for _, id := range ids {
		t.deliver(id, nil, reason)
	}
}

// deliver sends client id an invalidation of keys (nil: the null message, a flush) where
// Redis would: to itself in RESP3, or to its REDIRECT client (a push in RESP3, a message in
// RESP2 when it subscribed to __redis__:invalidate). A client with a command running gets
// it just before that command's reply (trackAfter).
func (t *tracker) deliver(id uint64, keys [][]byte, reason string) {
	t.mu.Lock()
	ts := t.clients[id]
	var self, target *session
	var redirect uint64
	if ts != nil {
		self, target, redirect = ts.ss, ts.target, ts.redirect
	}
	t.mu.Unlock()
	if ts == nil {
		return // no longer tracking
	}
	if target == nil {
		target = self
	} else if target.ctx.Err() != nil {
		if self.resp3.Load() {
			self.queueInvalidation(redirBrokenFrame(redirect), nil, false)
		}
		return
	}
	resp3 := target.resp3.Load()
	if !resp3 && (redirect == 0 || !target.invSub.Load()) {
		return // RESP2 without a subscribed REDIRECT target: nowhere to send it, as Redis
	}
	target.queueInvalidation(invalidationFrame(resp3, keys), keys, keys == nil)
	if keys == nil {
		t.s.metrics.track.flushes.WithLabelValues(reason).Inc()
	} else {
		t.s.metrics.track.invalidations.WithLabelValues(reason).Inc()
	}
}

// queueInvalidation hands a message to the client: before the reply of its running
// command, or at once through its event loop.
func (ss *session) queueInvalidation(frame []byte, keys [][]byte, flush bool) {
	if ss.ctx.Err() != nil {
		return
	}
	q := &ss.inv
	ss.addOut(int64(len(frame)))
	q.mu.Lock()
	if q.inCmd {
		q.frames = append(q.frames, frame...)
		q.flush = q.flush || flush
		for _, k := range keys {
			if q.keys == nil {
				q.keys = map[string]bool{}
			}
			q.keys[string(k)] = true
		}
		q.mu.Unlock()
		return
	}
	q.mu.Unlock()
	ss.pending.push(frame)
}

// start opens the invalidation connections (once, when the first client enables tracking)
// and waits, within backend-connect-timeout, until they are ready.
func (t *tracker) start() {
	t.mu.Lock()
	if t.started {
		t.mu.Unlock()
		return
	}
	t.started = true
	t.mu.Unlock()
	t.reconcile(false)
	t.mu.Lock()
	var ready []chan struct{}
	for _, ic := range t.conns {
		ready = append(ready, ic.ready)
	}
	t.mu.Unlock()
	timeout := time.After(t.s.conf().BackendConnectTimeout + time.Second)
	for _, ch := range ready {
		select {
		case <-ch:
		case <-timeout:
		}
	}
	t.s.cl.wg.Add(1)
	go t.manage()
}

// manage follows the slot map: a connection per master, and invalidations for the keys
// of slots that changed owner.
func (t *tracker) manage() {
	defer t.s.cl.wg.Done()
	ctx := t.s.ctx
	var idleSince time.Time
	for {
		if t.stopIfIdle(&idleSince) {
			return
		}
		ch := t.s.cl.ownerChanges.wait()
		select {
		case <-ctx.Done():
			t.mu.Lock()
			for _, ic := range t.conns {
				ic.cancel()
			}
			t.mu.Unlock()
			return
		case <-ch:
		case <-time.After(min(time.Second, trackIdleStop)):
		}
		t.reconcile(true)
	}
}

// trackIdleStop is how long the invalidation connections stay after the last tracking
// client is gone: then they are closed (the nodes stop reporting every write) and the
// table is emptied, until a client enables tracking again.
var trackIdleStop = 30 * time.Second

// stopIfIdle closes the invalidation connections once no client has tracked for
// trackIdleStop, and reports whether it did.
func (t *tracker) stopIfIdle(since *time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.clients) > 0 {
		*since = time.Time{}
		return false
	}
	if since.IsZero() {
		*since = time.Now()
	}
	if time.Since(*since) < trackIdleStop {
		return false
	}
	for _, ic := range t.conns {
		ic.cancel()
	}
	t.conns, t.keys, t.last, t.started = map[*node]*invConn{}, map[string][]uint64{}, nil, false
	t.updateGauges()
	t.s.log.Info("client tracking: no tracking client left, invalidation connections closed")
	return true
}

// reconcile opens connections to new masters, closes those to nodes no longer masters,
// and invalidates the keys of slots whose owner changed since the last map.
func (t *tracker) reconcile(moves bool) {
	m := t.s.cl.smap.Load()
	if m == nil {
		return
	}
	t.mu.Lock()
	old := t.last
	t.last = m
	want := map[*node]bool{}
	for _, n := range m.masters {
		want[n] = true
		if t.conns[n] == nil {
			ctx, cancel := context.WithCancel(t.s.ctx)
			ic := &invConn{n: n, ctx: ctx, cancel: cancel, ready: make(chan struct{})}
			context.AfterFunc(ctx, ic.closeLink)
			t.conns[n] = ic
			go t.connect(ic, moves)
		}
	}
	var gone []*invConn
	for n, ic := range t.conns {
		if !want[n] {
			gone = append(gone, ic)
			delete(t.conns, n)
		}
	}
	t.mu.Unlock()
	for _, ic := range gone {
		ic.cancel()
	}
	if moves && old != nil && old != m {
		changed := make([]bool, command.NumSlots)
		any := false
		for s := 0; s < command.NumSlots; s++ {
			if old.master(s) != m.master(s) {
				changed[s], any = true, true
			}
		}
		if any {
			t.invalidateSlots(func(s int) bool { return changed[s] }, "slot_moved")
		}
	}
}

// slotsOf returns a test of whether a slot is served by n in the current map.
func (t *tracker) slotsOf(n *node) func(int) bool {
	m := t.s.cl.smap.Load()
	return func(s int) bool { return m != nil && m.master(s) == n }
}

// connect makes the invalidation connection to ic's master (in a goroutine that ends once
// it is up or failed; a failure is retried after 100 ms, as a loss is). From then on the
// event loop reads it (frame) and hands its loss to lost. Once it is up after a loss or a
// failure, and when it comes up for a master that already served clients' reads (late), the
// keys of its slots are invalidated: nothing a client caches depends on a change the proxy
// could not hear of.
func (t *tracker) connect(ic *invConn, late bool) {
	ready := func() { ic.readyOnce.Do(func() { close(ic.ready) }) }
	defer ready()
	il := &invLink{}
	err := t.setup(ic, il)
	if err == nil {
		ic.mu.Lock()
		if il.gone || ic.ctx.Err() != nil {
			err = fmt.Errorf("%w: connection to %s closed", errFateUnknown, ic.n.addr)
		} else {
			ic.cur, ic.up = il, true
		}
		ic.mu.Unlock()
	}
	if err != nil {
		if il.k != nil {
			il.k.close()
		}
		if ic.ctx.Err() != nil {
			// The node is no longer a master (failover, removed): keys of its slots were
			// invalidated as slots moved; clients in BCAST mode are flushed.
			t.invalidateSlots(t.slotsOf(ic.n), "node_removed")
			return
		}
		t.retry(ic)
		return
	}
	if late {
		// Reads of its slots while it was not watched may be stale.
		t.invalidateSlots(t.slotsOf(ic.n), "connection_made")
	}
}

// retry makes ic's connection again after 100 ms, unless the node is no longer followed.
func (t *tracker) retry(ic *invConn) {
	time.AfterFunc(100*time.Millisecond, func() {
		if ic.ctx.Err() == nil {
			t.connect(ic, true)
		}
	})
}

// setup makes il, a connection of ic, and sets it up: CLIENT ID, then CLIENT TRACKING on
// BCAST REDIRECT to that id and SUBSCRIBE __redis__:invalidate.
func (t *tracker) setup(ic *invConn, il *invLink) error {
	sink := &pushSink{
		msg:  func(rep []byte) { t.frame(ic, rep) },
		lost: func() { t.lost(ic, il) },
	}
	k, err := t.s.openSvcLink(ic.n, sink)
	if err != nil {
		return err
	}
	il.k = k
	ctx, cancel := context.WithTimeout(ic.ctx, svcSetupWait(t.s))
	defer cancel()
	reps, err := k.roundTrip(ctx, resp.AppendCommand(nil, []byte("CLIENT"), []byte("ID")), 1)
	if err != nil {
		return err
	}
	id, ok := parseIntReply(reps[0])
	if !ok {
		return fmt.Errorf("CLIENT ID: unexpected reply %q", reps[0])
	}
	cmd := resp.AppendCommand(nil, []byte("CLIENT"), []byte("TRACKING"), []byte("on"), []byte("BCAST"), []byte("REDIRECT"), []byte(strconv.FormatInt(id, 10)))
	cmd = resp.AppendCommand(cmd, []byte("SUBSCRIBE"), []byte(invalidateChannel))
	reps, err = k.roundTrip(ctx, cmd, 2)
	if err != nil {
		return err
	}
	if len(reps[0]) == 0 || reps[0][0] != '+' {
		return fmt.Errorf("CLIENT TRACKING: %q", reps[0])
	}
	return nil
}

// lost handles the loss of il, a connection of ic (on the loop): sync calls waiting for it
// go on, the keys of its node's slots are invalidated, and it is made again unless the node
// is no longer followed. The loss of a connection not yet up is connect's to handle.
func (t *tracker) lost(ic *invConn, il *invLink) {
	ic.mu.Lock()
	il.gone = true
	if ic.cur != il {
		ic.mu.Unlock()
		return
	}
	ic.cur, ic.up, ic.pingOut = nil, false, false
	for _, ch := range append(ic.inPing, ic.waiting...) {
		close(ch)
	}
	ic.inPing, ic.waiting = nil, nil
	ic.mu.Unlock()
	if ic.ctx.Err() != nil {
		t.invalidateSlots(t.slotsOf(ic.n), "node_removed")
		return
	}
	t.s.log.Warn("client tracking: invalidation connection lost", "node", ic.n.addr)
	t.invalidateSlots(t.slotsOf(ic.n), "connection_lost")
	t.retry(ic)
}

// closeLink closes ic's connection (its node is no longer followed).
func (ic *invConn) closeLink() {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if ic.cur != nil {
		ic.cur.k.close()
	}
}

// frame handles a frame read on ic's connection (on the loop; rep is the connection's read
// buffer): at once, or after the frames before it with slowInval set (tests).
func (t *tracker) frame(ic *invConn, rep []byte) {
	rep = append([]byte(nil), rep...)
	if t.slowInval.Load() == 0 && !t.slowActive.Load() {
		t.handle(ic, rep)
		return
	}
	t.slowMu.Lock()
	t.slowQ = append(t.slowQ, slowFrame{ic, rep})
	if !t.slowActive.Load() {
		t.slowActive.Store(true)
		go t.slowFrames()
	}
	t.slowMu.Unlock()
}

// slowFrames handles the queued frames in order until there are none.
func (t *tracker) slowFrames() {
	for {
		t.slowMu.Lock()
		if len(t.slowQ) == 0 {
			t.slowActive.Store(false)
			t.slowMu.Unlock()
			return
		}
		f := t.slowQ[0]
		t.slowQ = t.slowQ[1:]
		t.slowMu.Unlock()
		t.handle(f.ic, f.rep)
	}
}

// handle processes one message of an invalidation connection: an invalidation (keys or
// null) or the pong of a sync PING.
func (t *tracker) handle(ic *invConn, rep []byte) {
	v, _, ok := parseReply(rep, 0)
	if !ok || v.t != '*' || len(v.elems) < 2 {
		return
	}
	kind := string(v.elems[0].s)
	switch {
	case kind == "pong":
		ic.mu.Lock()
		for _, ch := range ic.inPing {
			close(ch)
		}
		ic.inPing, ic.pingOut = ic.waiting, false
		ic.waiting = nil
		if len(ic.inPing) > 0 && ic.cur != nil {
			ic.pingOut = true
			ic.cur.k.write(pingCmd) // a lost connection's loss ends the waits (lost)
		}
		ic.mu.Unlock()
	case kind == "message" && len(v.elems) == 3:
		if d := t.slowInval.Load(); d > 0 {
			time.Sleep(time.Duration(d))
		}
		body := v.elems[2]
		if body.t != '*' {
			t.flushAll(t.slotsOf(ic.n), "flushall")
			return
		}
		keys := make([][]byte, 0, len(body.elems))
		for _, e := range body.elems {
			keys = append(keys, e.s)
		}
		t.invalidate(keys, "write")
	}
}

var pingCmd = resp.AppendCommand(nil, []byte("PING"))

// sync waits until every invalidation connection that is up has been read up to a PING
// sent now: whatever a node sent before it answered a command whose reply the proxy already
// has is then delivered. A connection that does not answer within backend-read-timeout (a
// frozen node) is closed: the keys of its node's slots are invalidated (lost), and later
// calls do not wait for it until it is made again.
func (t *tracker) sync(ctx context.Context) {
	t.mu.Lock()
	var chans []chan struct{}
	var conns []*invConn
	for _, ic := range t.conns {
		ic.mu.Lock()
		if ic.up {
			ch := make(chan struct{})
			if ic.pingOut {
				ic.waiting = append(ic.waiting, ch)
			} else {
				ic.cur.k.write(pingCmd) // a lost connection's loss ends the wait (lost)
				ic.pingOut = true
				ic.inPing = append(ic.inPing, ch)
			}
			chans = append(chans, ch)
			conns = append(conns, ic)
		}
		ic.mu.Unlock()
	}
	t.mu.Unlock()
	if len(chans) == 0 {
		return
	}
	timeout := time.NewTimer(t.s.conf().BackendReadTimeout)
	defer timeout.Stop()
	for i, ch := range chans {
		select {
		case <-ch:
		case <-ctx.Done():
			return
		case <-timeout.C:
			for j := i; j < len(chans); j++ {
				select {
				case <-chans[j]:
				default:
					ic := conns[j]
					ic.mu.Lock()
					if ic.cur != nil {
						t.s.log.Warn("client tracking: invalidation connection does not answer, closed", "node", ic.n.addr)
						ic.cur.k.close()
					}
					ic.mu.Unlock()
				}
			}
			return
		}
	}
}

// infoField answers INFO stats' tracking_total_keys, tracking_total_items and
// tracking_total_prefixes from the proxy's table (the nodes' count the proxy's own
// invalidation connections).
func (t *tracker) infoField(k string) (string, bool) {
	switch k {
	case "tracking_total_keys", "tracking_total_items", "tracking_total_prefixes":
	default:
		return "", false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	switch k {
	case "tracking_total_keys":
		n = len(t.keys)
	case "tracking_total_items":
		for _, ids := range t.keys {
			n += len(ids)
		}
	default:
		seen := map[string]bool{}
		for _, ts := range t.bcast {
			for _, p := range ts.prefixes {
				seen[p] = true
			}
		}
		n = len(seen)
	}
	return strconv.Itoa(n), true
}

package proxy

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// pubsubState is a client's subscriptions. SUBSCRIBE and PSUBSCRIBE use their own
// connections to masters, one per master, routed as pubsub_route.go describes;
// SSUBSCRIBE uses one private connection per master that owns a subscribed shard
// channel's slot. The connections are private node connections in push mode
// (pubsub_link.go): the session's loop relays what the node sends. Each
// connection remembers its channels and patterns so that they can be re-made on another
// node when that one dies; shard channels whose node dies are ended with a sunsubscribe
// message, as Redis does when a slot moves away, so the client subscribes again.
type pubsubState struct {
	mu        sync.Mutex
	conns     map[*node]*subConn // SUBSCRIBE/PSUBSCRIBE connections by node
	all       []*subConn         // every SUBSCRIBE/PSUBSCRIBE connection
	patHome   *subConn           // the connection whose ordinary pmessages are shown
	queue     []*pendConf        // the client's confirmations, in order
	pushMu    sync.Mutex         // keeps the confirmations of several relays in order
	shards    map[*node]*subConn
	channels  map[string]bool
	patterns  map[string]bool
	schannels map[string]*subConn
	expect    int           // replies still expected for forwarded commands
	counted   chan struct{} // signalled when expect drops
	closed    bool          // RESET or disconnect: relays stop
	quit      chan struct{} // closed with closed
	following bool          // followSlots runs
	rehomeMu  sync.Mutex    // one rehome at a time
}

// subConn is one subscription connection.
type subConn struct {
	node     *node
	dc       *subLink // nil while being re-established
	sharded  bool
	suppress int             // confirmations of a re-subscription, not shown to the client
	channels map[string]bool // SUBSCRIBE/PSUBSCRIBE connections: what this node holds
	patterns map[string]bool
	moving   // subscriptions moving with their slot (pubsub_follow.go)
}

func newPubsubState() *pubsubState {
	return &pubsubState{conns: map[*node]*subConn{}, shards: map[*node]*subConn{}, channels: map[string]bool{}, patterns: map[string]bool{}, schannels: map[string]*subConn{},
		counted: make(chan struct{}, 1), quit: make(chan struct{})}
}

// subscribed reports whether the session is in RESP2 subscribed mode.
func (ps *pubsubState) subscribed() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.channels)+len(ps.patterns)+len(ps.schannels) > 0 || ps.expect > 0
}

// pubsubRequest handles the subscribe family; in subscribed mode it also rejects what
// RESP2 does not allow there. It runs in the reader goroutine.
func (ss *session) pubsubRequest(r *request) bool {
	name := lowerName(r.args[0])
	switch name {
	case "subscribe", "psubscribe", "ssubscribe":
		if len(r.args) < 2 {
			r.reply, r.local, r.done = wrongArgs(name), true, closedDone()
			return true
		}
		if name == "ssubscribe" {
			slot := command.KeySlot(r.args[1])
			for _, ch := range r.args[2:] {
				if command.KeySlot(ch) != slot {
					r.reply, r.local, r.done = errCrossSlot, true, closedDone()
					return true
				}
			}
		}
		// The writer opens connections as needed (private ones: pubsub_link.go); the
		// reader waits, so that the next command sees the subscribed state.
		r.exec, r.barrier, r.done = execSubscribe, true, make(chan struct{}, 1)
		return true
	case "unsubscribe", "punsubscribe", "sunsubscribe":
		if ss.ps == nil {
			r.reply, r.local, r.done = newPubsubState().unsubscribe(name, r.args[1:]), true, closedDone()
			return true
		}
		r.exec, r.barrier, r.done = execUnsubscribe, true, make(chan struct{}, 1)
		return true
	}
	if ss.ps == nil || !ss.ps.subscribed() {
		return false
	}
	switch name {
	case "ping":
		if len(r.args) > 2 {
			r.reply, r.local, r.done = wrongArgs("ping"), true, closedDone()
			return true
		}
		r.exec, r.barrier, r.done = execPing, true, make(chan struct{}, 1)
		return true
	case "quit", "reset":
		return false
	}
	r.reply = resp.ErrorReply(fmt.Sprintf("ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context", name))
	r.local, r.done = true, closedDone()
	return true
}

// write sends a command on a subscription connection; ps.mu is held.
func (sc *subConn) write(args [][]byte) error {
	if sc.dc == nil {
		return fmt.Errorf("subscription to %s is being re-established", sc.node.addr)
	}
	sc.dc.write(resp.AppendCommand(nil, args...))
	return nil
}

// execPing forwards PING in subscribed mode; the node answers with a pong message.
func execPing(ss *session, r *request) []byte {
	ps := ss.ps
	target := ps.pending()
	if err := ps.ping(r.args); err != nil {
		return resp.ErrorReply("ERR proxy: " + err.Error())
	}
	return ss.collect(ps, target)
}

// execUnsubscribe forwards an unsubscribe command and returns the confirmations.
func execUnsubscribe(ss *session, r *request) []byte {
	ps := ss.ps
	target := ps.pending()
	local := ps.unsubscribe(lowerName(r.args[0]), r.args[1:])
	return append(local, ss.collect(ps, target)...)
}

// pending returns the number of replies still expected from the nodes.
func (ps *pubsubState) pending() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.expect
}

// collect runs in the writer after a subscribe-family command was forwarded: it takes the
// messages the relays pass on until the command's confirmations are in (expect is back
// to target), so that they reach the client before the reply to any later command.
func (ss *session) collect(ps *pubsubState, target int) []byte {
	var out []byte
	take := func() {
		for _, m := range ss.pending.takeMsgs() {
			out = append(out, m...)
			ss.releaseOut(int64(len(m)))
		}
	}
	t := time.NewTimer(ss.s.conf().BackendReadTimeout)
	defer t.Stop()
	for {
		take()
		if ps.pending() <= target {
			// A relay pushes before it counts a confirmation: whatever it counted is
			// already queued.
			take()
			return out
		}
		select {
		case <-ss.pending.pushed:
		case <-ps.counted:
		case <-t.C:
			ss.log().Warn("subscription confirmations late; going on", "client_id", ss.id, "expected", ps.pending()-target)
			return out // late confirmations follow through the relay
		case <-ss.ctx.Done():
			return out
		}
	}
}

func (ps *pubsubState) ping(args [][]byte) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var sc *subConn
	for _, x := range ps.all {
		if x.dc != nil {
			sc = x
			break
		}
	}
	if sc == nil {
		for _, x := range ps.shards {
			sc = x
			break
		}
	}
	if sc == nil {
		return fmt.Errorf("no subscription connection")
	}
	ps.expect++
	return sc.write(args)
}

// confirmation is the reply Redis gives to an (un)subscribe of name with count left.
func confirmation(kind string, name []byte, count int) []byte {
	b := resp.AppendArrayHeader(nil, 3)
	b = resp.AppendBulkString(b, kind)
	if name == nil {
		b = append(b, replyNil...)
	} else {
		b = resp.AppendBulk(b, name)
	}
	return resp.AppendInt(b, int64(count))
}

// unsubscribe forwards UNSUBSCRIBE/PUNSUBSCRIBE/SUNSUBSCRIBE to the connections holding
// the subscriptions. Confirmations for names not subscribed are produced here (returned,
// in order); the others arrive through the relays.
func (ps *pubsubState) unsubscribe(kind string, names [][]byte) []byte {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	total := func() int {
		if kind == "sunsubscribe" {
			return len(ps.schannels)
		}
		return len(ps.channels) + len(ps.patterns)
	}
	if kind != "sunsubscribe" {
		return ps.unsubscribeRouted(kind, names)
	}
	// Shard channels: group by connection.
	if len(names) == 0 {
		if len(ps.schannels) == 0 {
			return confirmation(kind, nil, 0)
		}
		per := map[*subConn]int{}
		for _, sc := range ps.schannels {
			per[sc]++
		}
		for sc, n := range per {
			ps.expect += n
			if err := sc.write([][]byte{[]byte(kind)}); err != nil {
				ps.expect -= n
			}
		}
		return nil
	}
	var local []byte
	for _, n := range names {
		sc, ok := ps.schannels[string(n)]
		if !ok {
			local = append(local, confirmation(kind, n, total())...)
			continue
		}
		ps.expect++
		if err := sc.write([][]byte{[]byte(kind), n}); err != nil {
			ps.expect--
		}
	}
	// Confirmations of names not subscribed follow the forwarded ones; Redis clients
	// match confirmations by name, not by position.
	return local
}

// execSubscribe runs in the writer: it opens the subscription connection the command
// needs, starts its relay and forwards the command; the confirmations come through the
// relay.
func execSubscribe(ss *session, r *request) []byte {
	m := ss.s.cl.smap.Load()
	if m == nil {
		return resp.ErrorReply("ERR proxy: " + ErrNoSlotMap.Error())
	}
	if ss.ps == nil {
		ss.ps = newPubsubState()
		ss.inPubSub.Store(true)
	}
	ps := ss.ps
	if lowerName(r.args[0]) != "ssubscribe" {
		return execSubscribeRouted(ss, r, m)
	}
	ps.mu.Lock()
	sc := ps.shards[m.master(command.KeySlot(r.args[1]))]
	ps.mu.Unlock()
	if sc == nil {
		n := m.master(command.KeySlot(r.args[1]))
		sc = &subConn{node: n, sharded: true}
		dc, err := ss.openSubLink(ss.ctx, n, ps, sc)
		if err != nil {
			return resp.ErrorReply("ERR proxy: " + err.Error())
		}
		ps.mu.Lock()
		if !sc.adopt(dc) {
			ps.mu.Unlock()
			return resp.ErrorReply("ERR proxy: " + ErrNotSent.Error() + ": connection to " + n.addr + " lost")
		}
		ps.shards[n] = sc
		ps.mu.Unlock()
	}
	ps.mu.Lock()
	target := ps.expect
	ps.expect += len(r.args) - 1
	err := sc.write(r.args)
	if err != nil {
		ps.expect -= len(r.args) - 1
	}
	ps.mu.Unlock()
	if err != nil {
		return resp.ErrorReply("ERR proxy: " + err.Error())
	}
	return ss.collect(ps, target)
}

// closePubsub ends every subscription (RESET, disconnect).
func (ss *session) closePubsub() {
	ps := ss.ps
	if ps == nil {
		return
	}
	ps.mu.Lock()
	if !ps.closed {
		close(ps.quit)
	}
	ps.closed = true
	conns := append(make([]*subConn, 0, len(ps.shards)+len(ps.all)), ps.all...)
	for _, sc := range ps.shards {
		conns = append(conns, sc)
	}
	ps.mu.Unlock()
	for _, sc := range conns {
		ps.mu.Lock()
		if sc.dc != nil {
			sc.dc.close() // subLost sees the subscriptions ended
		}
		ps.mu.Unlock()
	}
	ss.ps = nil
}

// endShard tells the client its shard channels on a lost connection are unsubscribed.
func (ss *session) endShard(ps *pubsubState, sc *subConn) {
	ss.s.cl.requestRefresh(refreshConnLoss)
	ps.mu.Lock()
	var out []byte
	for ch, x := range ps.schannels {
		if x == sc {
			delete(ps.schannels, ch)
			out = append(out, confirmation("sunsubscribe", []byte(ch), len(ps.schannels))...)
		}
	}
	delete(ps.shards, sc.node)
	ps.expect = 0 // what was pending on the lost connection will not come
	ps.mu.Unlock()
	if out != nil {
		ss.pushMsg(out)
	}
}

// account updates the subscription state from one reply on sc and returns what the
// client should see (shard confirmations carry the count over all shard connections).
func (ps *pubsubState) account(sc *subConn, rep []byte) (out []byte, show, confirm bool) {
	elems, ok := resp.SplitArray(rep)
	if !ok || len(elems) < 2 {
		return rep, true, false
	}
	kind, _ := bulkValue(elems[0])
	ps.mu.Lock()
	defer ps.mu.Unlock()
	switch kind {
	case "subscribe", "unsubscribe", "psubscribe", "punsubscribe", "ssubscribe", "sunsubscribe", "pong":
		name, _ := bulkValue(elems[1])
		switch kind {
		case "subscribe":
			ps.channels[name] = true
		case "unsubscribe":
			delete(ps.channels, name)
		case "psubscribe":
			ps.patterns[name] = true
		case "punsubscribe":
			delete(ps.patterns, name)
		case "ssubscribe":
			ps.schannels[name] = sc
		case "sunsubscribe":
			if len(elems[1]) > 0 && elems[1][0] == '$' && string(elems[1]) != string(replyNil) {
				delete(ps.schannels, name)
			}
		}
		if sc.suppress > 0 && kind != "pong" {
			sc.suppress--
			return nil, false, false
		}
		if kind == "ssubscribe" || kind == "sunsubscribe" {
			if len(elems) == 3 {
				var nm []byte
				if string(elems[1]) != string(replyNil) {
					nm = []byte(name)
				}
				return confirmation(kind, nm, len(ps.schannels)), true, true
			}
		}
		return rep, true, true
	}
	return rep, true, false
}

// resubscribe moves a lost SUBSCRIBE/PSUBSCRIBE connection's subscriptions to a reachable
// master; it reports false when the session or the subscription ended first.
func (ss *session) resubscribe(ps *pubsubState, sc *subConn) bool {
	ps.mu.Lock()
	old := sc.node
	if sc.dc != nil {
		sc.dc.close()
	}
	sc.dc = nil
	lost := ps.abandonConfirms() // what was pending on the lost connection will not come
	ps.expect = 0
	ps.movePatternHome(sc)
	ps.mu.Unlock()
	if lost != nil {
		ss.pushMsg(lost)
	}
	ss.s.cl.requestRefresh(refreshConnLoss)
	backoff := 50 * time.Millisecond
	anyAfter := time.Now().Add(resubscribeAnyAfter)
	for ss.ctx.Err() == nil {
		m := ss.s.cl.smap.Load()
		var n *node
		if m != nil {
			ps.mu.Lock()
			n = ps.resubscribeTarget(m, old, sc, time.Now().After(anyAfter))
			ps.mu.Unlock()
		}
		if n != nil {
			ctx, cancel := context.WithTimeout(ss.ctx, ss.s.conf().BackendConnectTimeout)
			dc, err := ss.openSubLink(ctx, n, ps, sc)
			cancel()
			if err == nil {
				ps.mu.Lock()
				if ps.closed {
					ps.mu.Unlock()
					dc.close()
					return false
				}
				if dc.lost { // closed already: tried again
					ps.mu.Unlock()
					goto retry
				}
				var cmd []byte
				if len(sc.channels) > 0 {
					cmd = resp.AppendCommand(cmd, append([][]byte{[]byte("SUBSCRIBE")}, keysOf(sc.channels)...)...)
				}
				if len(sc.patterns) > 0 {
					cmd = resp.AppendCommand(cmd, append([][]byte{[]byte("PSUBSCRIBE")}, keysOf(sc.patterns)...)...)
				}
				sc.suppress = len(sc.channels) + len(sc.patterns)
				sc.moving = moving{} // nothing sent on the lost connection will be confirmed
				ps.expect = 0        // replies pending on the lost connection will not come
				if ps.conns[old] == sc {
					delete(ps.conns, old)
				}
				if ps.conns[n] == nil {
					ps.conns[n] = sc
				}
				sc.node = n
				sc.adopt(dc)
				if cmd != nil {
					dc.write(cmd)
				}
				nch, npat := len(sc.channels), len(sc.patterns)
				ps.mu.Unlock()
				ss.log().Info("re-subscribed", "node", n.addr, "channels", nch, "patterns", npat)
				go ss.rehome(ps) // what moved while this connection was lost
				return true
			}
		}
	retry:
		if !ss.sleep(backoff) {
			return false
		}
		backoff = min(2*backoff, time.Second)
	}
	return false
}

func keysOf(m map[string]bool) [][]byte {
	out := make([][]byte, 0, len(m))
	for k := range m {
		out = append(out, []byte(k))
	}
	return out
}

// pubsubStage is the Pub/Sub stage of newRequest: in RESP3 a subscribed client may run
// any command (as in Redis), so only the subscribe family is Pub/Sub's.
func (ss *session) pubsubStage(r *request) bool {
	if ss.resp3.Load() {
		switch lowerName(r.args[0]) {
		case "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe":
		default:
			return false
		}
	}
	return ss.pubsubRequest(r)
}

package proxy

import (
	"bytes"
	"strings"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// Routing of SUBSCRIBE and PSUBSCRIBE (the sharded family is in pubsub.go).
//
// A channel is subscribed on the master that owns its slot, where PUBLISH (routed by the
// same slot) is executed, so PUBLISH counts the proxy's subscribers as a single Redis
// would. A cluster node sends every PUBLISH to all nodes over the cluster bus, so a
// channel subscription on its slot's owner still receives what is published anywhere.
// A pattern can match channels of every slot: it is subscribed on every master, so each
// PUBLISH counts it once; its pmessages are shown only from one connection, as every node
// delivers every PUBLISH: the one to the master of the channel's slot (pmessageHome). Keyspace and keyevent notifications are not
// sent over the bus: each master produces those of its own keys, so __keyspace@…/
// __keyevent@… channels and patterns are subscribed on every master and their messages
// are shown from every connection, merged into one stream.
//
// The client's confirmations are produced by the proxy, in the order of the command's
// arguments, when every node that got the name has confirmed it; their counts are the
// client's subscriptions as a single Redis counts them.

// pendConf is a confirmation the client is owed, waiting for left node confirmations.
type pendConf struct {
	kind string // subscribe, unsubscribe, psubscribe, punsubscribe
	name []byte // nil: "unsubscribe from nothing"
	left int
}

// notification reports whether channel (or a pattern) names keyspace or keyevent
// notifications, which every master produces for its own keys.
func notification(name []byte) bool {
	return bytes.HasPrefix(name, []byte("__keyspace@")) || bytes.HasPrefix(name, []byte("__keyevent@"))
}

// subTargets returns the masters a channel or pattern is subscribed on.
func subTargets(m *slotMap, pattern bool, name []byte) []*node {
	if pattern || notification(name) {
		return m.masters
	}
	return []*node{m.master(command.KeySlot(name))}
}

// execSubscribeRouted runs SUBSCRIBE/PSUBSCRIBE in the writer: every name is sent to its
// masters' connections (opened as needed); the confirmations come through the relays.
func execSubscribeRouted(ss *session, r *request, m *slotMap) []byte {
	ps := ss.ps
	kind := lowerName(r.args[0])
	pattern := kind == "psubscribe"
	// Open the connections first: nothing is sent unless every one is there.
	for _, name := range r.args[1:] {
		for _, n := range subTargets(m, pattern, name) {
			ps.mu.Lock()
			sc := ps.conns[n]
			ps.mu.Unlock()
			if sc != nil {
				continue
			}
			sc = &subConn{node: n, channels: map[string]bool{}, patterns: map[string]bool{}}
			dc, err := ss.openSubLink(ss.ctx, n, ps, sc)
			if err != nil {
				return resp.ErrorReply("ERR proxy: " + err.Error())
			}
			ps.mu.Lock()
			if !sc.adopt(dc) {
				ps.mu.Unlock()
				return resp.ErrorReply("ERR proxy: " + ErrNotSent.Error() + ": connection to " + n.addr + " lost")
			}
			ps.conns[n] = sc
			ps.all = append(ps.all, sc)
			follow := !ps.following
			ps.following = true
			ps.mu.Unlock()
			if follow {
				go ss.followSlots(ps)
			}
		}
	}
	ps.mu.Lock()
	target := ps.expect
	per := map[*subConn][][]byte{}
	var order []*subConn
	for _, name := range r.args[1:] {
		pc := &pendConf{kind: kind, name: name}
		for _, n := range subTargets(m, pattern, name) {
			sc := ps.conns[n]
			if sc == nil { // its relay ended meanwhile
				continue
			}
			if per[sc] == nil {
				order = append(order, sc)
			}
			per[sc] = append(per[sc], name)
			if pattern {
				sc.patterns[string(name)] = true
				if ps.patHome == nil {
					ps.patHome = sc
				}
			} else {
				sc.channels[string(name)] = true
			}
			pc.left++
		}
		ps.queue = append(ps.queue, pc)
	}
	ps.sendRouted(kind, per, order)
	out := ps.flushConfirms()
	ps.mu.Unlock()
	return append(out, ss.collect(ps, target)...)
}

// sendRouted writes kind with each connection's names and counts the confirmations it
// expects; a connection that cannot be written to (being re-established) confirms
// nothing: the re-subscription carries its state. ps.mu is held.
func (ps *pubsubState) sendRouted(kind string, per map[*subConn][][]byte, order []*subConn) {
	for _, sc := range order {
		names := per[sc]
		if err := sc.write(append([][]byte{[]byte(kind)}, names...)); err != nil {
			for _, name := range names {
				ps.confirmed(kind, name)
			}
			continue
		}
		ps.expect += len(names)
	}
}

// unsubscribeRouted forwards UNSUBSCRIBE/PUNSUBSCRIBE to the connections holding the
// names (every subscribed one when none is given) and returns the confirmations that are
// already complete. ps.mu is held.
func (ps *pubsubState) unsubscribeRouted(kind string, names [][]byte) []byte {
	pattern := kind == "punsubscribe"
	set := ps.channels
	if pattern {
		set = ps.patterns
	}
	if len(names) == 0 {
		if len(set) == 0 {
			ps.queue = append(ps.queue, &pendConf{kind: kind})
			return ps.flushConfirms()
		}
		names = keysOf(set)
	}
	per := map[*subConn][][]byte{}
	var order []*subConn
	for _, name := range names {
		pc := &pendConf{kind: kind, name: name}
		for _, sc := range ps.all {
			held := sc.channels
			if pattern {
				held = sc.patterns
			}
			if !held[string(name)] {
				continue
			}
			delete(held, string(name))
			if per[sc] == nil {
				order = append(order, sc)
			}
			per[sc] = append(per[sc], name)
			pc.left++
		}
		ps.queue = append(ps.queue, pc)
	}
	ps.sendRouted(kind, per, order)
	return ps.flushConfirms()
}

// confirmed counts one node confirmation of kind for name. ps.mu is held.
func (ps *pubsubState) confirmed(kind string, name []byte) {
	for _, pc := range ps.queue {
		if pc.left > 0 && pc.kind == kind && bytes.Equal(pc.name, name) {
			pc.left--
			return
		}
	}
}

// flushConfirms takes the complete confirmations at the head of the queue, applies them
// to the client's subscriptions and returns them as the client sees them. ps.mu is held.
func (ps *pubsubState) flushConfirms() []byte {
	var out []byte
	for len(ps.queue) > 0 && ps.queue[0].left <= 0 {
		pc := ps.queue[0]
		ps.queue = ps.queue[1:]
		if pc.name != nil {
			switch pc.kind {
			case "subscribe":
				ps.channels[string(pc.name)] = true
			case "unsubscribe":
				delete(ps.channels, string(pc.name))
			case "psubscribe":
				ps.patterns[string(pc.name)] = true
			case "punsubscribe":
				delete(ps.patterns, string(pc.name))
			}
		}
		out = append(out, confirmation(pc.kind, pc.name, len(ps.channels)+len(ps.patterns))...)
	}
	if len(ps.queue) == 0 {
		ps.queue = nil
	}
	return out
}

// abandonConfirms completes every waiting confirmation (a connection was lost: what it
// owed will not come; the re-subscription restores its subscriptions). ps.mu is held.
func (ps *pubsubState) abandonConfirms() []byte {
	for _, pc := range ps.queue {
		pc.left = 0
	}
	return ps.flushConfirms()
}

// accountRouted handles one reply on a SUBSCRIBE/PSUBSCRIBE connection: confirmations
// are counted and turned into the client's when complete; pmessages of ordinary
// patterns are shown from the pattern home connection only.
func (ps *pubsubState) accountRouted(sc *subConn, rep []byte) (out []byte, show, confirm bool) {
	elems, ok := resp.SplitArray(rep)
	if !ok || len(elems) < 2 {
		return rep, true, false
	}
	kind, _ := bulkValue(elems[0])
	ps.mu.Lock()
	defer ps.mu.Unlock()
	switch kind {
	case "subscribe", "unsubscribe", "psubscribe", "punsubscribe":
		if len(elems) == 3 && ps.movedConfirmation(sc, kind, elems[1]) {
			return nil, false, false
		}
		if sc.suppress > 0 {
			sc.suppress--
			return nil, false, false
		}
		var name []byte
		if s, ok := bulkValue(elems[1]); ok {
			name = []byte(s)
		}
		ps.confirmed(kind, name)
		out = ps.flushConfirms()
		return out, len(out) > 0, true
	case "pong":
		return rep, true, true
	case "message":
		if ch, ok := bulkValue(elems[1]); ok && sc.gone[ch] {
			return nil, false, false // moved with its slot; the new owner's connection shows it
		}
	case "pmessage":
		if len(elems) == 4 {
			if ch, ok := bulkValue(elems[2]); !ok || !strings.HasPrefix(ch, "__keyspace@") && !strings.HasPrefix(ch, "__keyevent@") {
				if sc != ps.pmessageHome(ch) {
					return nil, false, false
				}
			}
		}
	}
	return rep, true, false
}

// relayRouted passes one reply of a SUBSCRIBE/PSUBSCRIBE connection on to the client; it
// reports false when the client is gone, and whether the reply was a confirmation.
func (ss *session) relayRouted(ps *pubsubState, sc *subConn, rep []byte) (ok, confirm bool) {
	ps.pushMu.Lock() // confirmations taken by two relays reach the client in their order
	defer ps.pushMu.Unlock()
	out, show, confirm := ps.accountRouted(sc, rep)
	return !show || ss.pushMsg(out), confirm
}

// resubscribeAnyAfter is how long a lost connection's subscriptions wait for a master
// this client has no connection to (the replica promoted in place of the lost one, or
// the lost node back) before they go to any other master.
const resubscribeAnyAfter = 15 * time.Second

// resubscribeTarget picks the master that takes over sc's subscriptions (sc's node, old,
// was lost): a master without a connection of this client, which after a failover is the
// promoted replica (a pattern then is on every master again, and every master's
// notifications arrive once), the old node last; with any, another master rather than a
// node that is down. nil: none yet. ps.mu is held.
func (ps *pubsubState) resubscribeTarget(m *slotMap, old *node, sc *subConn, any bool) *node {
	var fallback, other *node
	for _, n := range m.masters {
		if x := ps.conns[n]; x != nil && x != sc {
			if n != old && !n.down.Load() && other == nil {
				other = n
			}
			continue
		}
		if n == old || n.down.Load() {
			fallback = n
			continue
		}
		return n
	}
	if any && other != nil && (fallback == nil || fallback.down.Load()) {
		return other
	}
	return fallback
}

// pmessageHome is the connection whose pmessages for channel ch are shown: the one to the
// master of ch's slot, where the proxy's PUBLISH runs and delivers to its own subscribers
// before it answers, so that messages published one after the other on different
// masters arrive in publish order (a node's copy of another master's PUBLISH comes over
// the cluster bus, later and in no order with its own); patHome when the client has no
// pattern connection to that master. ps.mu is held.
func (ps *pubsubState) pmessageHome(ch string) *subConn {
	if ps.patHome == nil {
		return nil
	}
	if m := ps.patHome.node.c.smap.Load(); m != nil {
		if x := ps.conns[m.master(command.KeySlot([]byte(ch)))]; x != nil && x.dc != nil && len(x.patterns) > 0 {
			return x
		}
	}
	return ps.patHome
}

// movePatternHome gives the showing of ordinary pmessages to another connection holding
// the patterns while sc (the home) is re-established. ps.mu is held.
func (ps *pubsubState) movePatternHome(sc *subConn) {
	if ps.patHome != sc {
		return
	}
	for _, x := range ps.all {
		if x != sc && x.dc != nil && len(x.patterns) > 0 {
			ps.patHome = x
			return
		}
	}
}

// publishBySlot routes PUBLISH to the master of its channel's slot, where the channel's
// subscriptions through the proxy are (a cluster node passes it to all others).
func publishBySlot(ss *session, r *request) bool {
	if len(r.args) == 3 {
		r.slot = command.KeySlot(r.args[1])
	}
	return false // routing: by r.slot (arity errors from any master)
}

// pubsubNumsub answers PUBSUB NUMSUB from each channel's slot owner, where the proxy
// subscribes it (notification channels: on every master, each counting every client).
func pubsubNumsub(ss *session, r *request) bool {
	m := ss.s.cl.smap.Load()
	if m == nil {
		return false
	}
	return fanout(func(parts []*request, replies [][]byte) []byte {
		if e := nodeError(parts, replies); e != nil {
			return e
		}
		var counts [][][]byte
		for _, rep := range replies {
			elems, ok := resp.SplitArray(rep)
			if !ok || len(elems) != 2*(len(r.args)-2) {
				return resp.ErrorReply("ERR proxy: unexpected reply from a cluster node")
			}
			counts = append(counts, elems)
		}
		out := resp.AppendArrayHeader(nil, 2*(len(r.args)-2))
		for j, ch := range r.args[2:] {
			owner := m.master(command.KeySlot(ch))
			var best []byte
			var bestN int64 = -1
			for i, p := range parts {
				v := counts[i][2*j+1]
				if p.pinned == owner {
					best, bestN = v, 1<<62
					break
				}
				if n, _ := parseIntReply(v); n > bestN {
					best, bestN = v, n
				}
			}
			out = resp.AppendBulk(out, ch)
			out = append(out, best...)
		}
		return out
	})(ss, r)
}

// mergeChannels is PUBSUB CHANNELS: the union of the masters' channels.
func mergeChannels(parts []*request, replies [][]byte) []byte {
	if e := nodeError(parts, replies); e != nil {
		return e
	}
	seen := map[string]bool{}
	var all [][]byte
	for _, rep := range replies {
		elems, ok := resp.SplitArray(rep)
		if !ok {
			return resp.ErrorReply("ERR proxy: unexpected reply from a cluster node")
		}
		for _, e := range elems {
			if !seen[string(e)] {
				seen[string(e)] = true
				all = append(all, e)
			}
		}
	}
	out := resp.AppendArrayHeader(nil, len(all))
	for _, e := range all {
		out = append(out, e...)
	}
	return out
}

// mergeMax is PUBSUB NUMPAT: every master holds every pattern of the proxy's clients, so
// the unique patterns are the most any master has.
func mergeMax(parts []*request, replies [][]byte) []byte {
	if e := nodeError(parts, replies); e != nil {
		return e
	}
	best := replies[0]
	bestN, _ := parseIntReply(best)
	for _, rep := range replies[1:] {
		if n, ok := parseIntReply(rep); ok && n > bestN {
			best, bestN = rep, n
		}
	}
	return best
}

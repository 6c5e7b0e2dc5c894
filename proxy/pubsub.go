package proxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// pubsubState is a client's subscription: one dedicated connection to a master (a cluster
// delivers PUBLISH to every node), a relay goroutine that forwards what the node sends,
// and the channels and patterns subscribed, so that the subscription can be re-made on
// another node when that one dies.
type pubsubState struct {
	mu       sync.Mutex
	node     *node
	dc       *directConn
	channels map[string]bool
	patterns map[string]bool
	expect   int // replies still expected for forwarded commands
	suppress int // confirmations of a re-subscription, not shown to the client
}

// subscribed reports whether the session is in RESP2 subscribed mode.
func (ps *pubsubState) subscribed() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.channels)+len(ps.patterns) > 0 || ps.expect > 0
}

var pubsubCommands = map[string]bool{"subscribe": true, "psubscribe": true, "unsubscribe": true, "punsubscribe": true, "ping": true}

// pubsubRequest handles the subscribe family; in subscribed mode it also rejects what
// RESP2 does not allow there.
func (ss *session) pubsubRequest(r *request) bool {
	name := lowerName(r.args[0])
	if ss.ps == nil {
		switch name {
		case "subscribe", "psubscribe":
			if len(r.args) < 2 {
				r.reply, r.local, r.done = wrongArgs(name), true, closedDone()
				return true
			}
			r.exec, r.barrier, r.done = execSubscribe, true, make(chan struct{}, 1)
			return true
		case "unsubscribe", "punsubscribe":
			// Not subscribed: Redis confirms with a nil channel and count 0.
			b := appendArrayHeader(nil, 3)
			b = appendBulkString(b, name)
			b = append(b, replyNil...)
			r.reply, r.local, r.done = appendInt(b, 0), true, closedDone()
			return true
		}
		return false
	}
	if pubsubCommands[name] {
		if err := ss.ps.forward(r.args); err != nil {
			r.reply = errorReply("ERR proxy: " + err.Error())
		}
		r.local, r.done = true, closedDone() // the node's reply arrives through the relay
		r.noReply = r.reply == nil
		return true
	}
	if ss.ps.subscribed() && name != "quit" && name != "reset" {
		r.reply = errorReply(fmt.Sprintf("ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context", name))
		r.local, r.done = true, closedDone()
		return true
	}
	return false
}

// forward sends a subscribe-family command on the subscription's connection.
func (ps *pubsubState) forward(args [][]byte) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	n := len(args) - 1
	switch lowerName(args[0]) {
	case "ping":
		n = 1
	case "unsubscribe":
		if n == 0 {
			n = max(1, len(ps.channels))
		}
	case "punsubscribe":
		if n == 0 {
			n = max(1, len(ps.patterns))
		}
	}
	ps.expect += n
	if ps.dc == nil {
		return fmt.Errorf("subscription is being re-established")
	}
	ps.dc.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := ps.dc.conn.Write(appendCommand(nil, args...))
	return err
}

// execSubscribe opens the subscription connection, starts the relay and forwards the
// first SUBSCRIBE or PSUBSCRIBE; its confirmations come through the relay.
func execSubscribe(ss *session, r *request) []byte {
	m := ss.s.cl.smap.Load()
	if m == nil {
		return errorReply("ERR proxy: " + ErrNoSlotMap.Error())
	}
	n := m.masters[rand.IntN(len(m.masters))]
	dc, err := ss.s.direct.acquire(ss.ctx, n)
	if err != nil {
		return errorReply("ERR proxy: " + err.Error())
	}
	ps := &pubsubState{node: n, dc: dc, channels: map[string]bool{}, patterns: map[string]bool{}}
	ss.ps = ps
	if err := ps.forward(r.args); err != nil {
		return errorReply("ERR proxy: " + err.Error())
	}
	go ss.relay(ps)
	r.noReply = true
	return nil
}

// relay forwards messages and confirmations from the subscription connection to the
// client, and re-subscribes on another master when the connection fails.
func (ss *session) relay(ps *pubsubState) {
	defer func() {
		ps.mu.Lock()
		if ps.dc != nil {
			ss.s.direct.release(ps.node, ps.dc, false)
			ps.dc = nil
		}
		ps.mu.Unlock()
	}()
	for {
		ps.mu.Lock()
		dc := ps.dc
		ps.mu.Unlock()
		rep, err := dc.rr.next()
		if err != nil {
			if ss.ctx.Err() != nil {
				return
			}
			ss.s.log.Warn("subscription connection lost; re-subscribing", "node", ps.node.addr, "err", err)
			if !ss.resubscribe(ps) {
				return
			}
			continue
		}
		if !ps.account(rep) {
			continue
		}
		select {
		case ss.push <- rep:
		case <-ss.ctx.Done():
			return
		}
	}
}

// account updates the subscription state from one reply and reports whether the client
// should see it.
func (ps *pubsubState) account(rep []byte) bool {
	elems, ok := splitArray(rep)
	if !ok || len(elems) < 2 {
		return true
	}
	kind, _ := bulkValue(elems[0])
	ps.mu.Lock()
	defer ps.mu.Unlock()
	switch kind {
	case "subscribe", "unsubscribe", "psubscribe", "punsubscribe", "pong":
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
		}
		if ps.suppress > 0 && kind != "pong" {
			ps.suppress--
			return false
		}
		if ps.expect > 0 {
			ps.expect--
		}
	}
	return true
}

// resubscribe moves the subscription to a reachable master; it reports false when the
// session ended first.
func (ss *session) resubscribe(ps *pubsubState) bool {
	ps.mu.Lock()
	old := ps.node
	ss.s.direct.release(ps.node, ps.dc, false)
	ps.dc = nil
	ps.mu.Unlock()
	ss.s.cl.requestRefresh(refreshConnLoss)
	backoff := 50 * time.Millisecond
	for ss.ctx.Err() == nil {
		if m := ss.s.cl.smap.Load(); m != nil {
			n := m.masters[rand.IntN(len(m.masters))]
			if n == old && len(m.masters) > 1 {
				n = m.masters[(indexOf(m.masters, n)+1)%len(m.masters)]
			}
			ctx, cancel := context.WithTimeout(ss.ctx, ss.s.conf().BackendConnectTimeout)
			dc, err := ss.s.direct.acquire(ctx, n)
			cancel()
			if err == nil {
				ps.mu.Lock()
				var cmd []byte
				if len(ps.channels) > 0 {
					cmd = appendCommand(cmd, append([][]byte{[]byte("SUBSCRIBE")}, keysOf(ps.channels)...)...)
				}
				if len(ps.patterns) > 0 {
					cmd = appendCommand(cmd, append([][]byte{[]byte("PSUBSCRIBE")}, keysOf(ps.patterns)...)...)
				}
				ps.suppress = len(ps.channels) + len(ps.patterns)
				ps.node, ps.dc = n, dc
				_, err = dc.conn.Write(cmd)
				ps.mu.Unlock()
				if err == nil {
					ss.s.log.Info("re-subscribed", "node", n.addr)
					return true
				}
			}
		}
		if !ss.sleep(backoff) {
			return false
		}
		backoff = min(2*backoff, time.Second)
	}
	return false
}

func indexOf(list []*node, n *node) int {
	for i, x := range list {
		if x == n {
			return i
		}
	}
	return 0
}

func keysOf(m map[string]bool) [][]byte {
	out := make([][]byte, 0, len(m))
	for k := range m {
		out = append(out, []byte(k))
	}
	return out
}

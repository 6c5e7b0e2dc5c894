package proxy

import (
	"context"
	"fmt"
)

// Subscription connections are private node connections (private.go) of the session's
// loop in push mode: the subscribe family is written through the connection's write path
// and every frame it reads while no request is in flight (a message, a confirmation) is
// handed to the relay (subMsg) on the loop, which accounts it and queues it for the client
// (pushMsg); its loss is handed to subLost. No goroutine waits on a subscription
// connection: only a lost one's re-subscription (resubscribe, endShard) runs in one, as
// the slow path does. Bound for the subscription's life, each counts against
// blocking-connections; the session going away (CLIENT KILL, disconnect) closes it, as any
// private connection, and RESET closes it through closePubsub.

// pushSink receives on the loop what a private connection in push mode reads.
type pushSink struct {
	msg  func(rep []byte) // a frame no request waits for (rep is the read buffer: copy it)
	lost func()           // the connection is closed (once)
}

// subLink is one subscription connection's private node connection. A subConn's link is
// replaced when its connection is re-established; late events of a replaced link do
// nothing (subMsg, subLost).
type subLink struct {
	l    *loop
	b    *lbackend
	lost bool // its connection closed (pubsubState.mu)
}

// adopt makes k sc's link; false when k's connection closed already (before sc had it:
// no one else would re-establish it). ps.mu is held.
func (sc *subConn) adopt(k *subLink) bool {
	if k.lost {
		return false
	}
	sc.dc = k
	return true
}

// openSubLink binds a private connection to n in push mode for sc and waits until the node
// answered a PING on it (a new connection dials first), at most until ctx ends or the
// dial's own limit passed.
func (ss *session) openSubLink(ctx context.Context, n *node, ps *pubsubState, sc *subConn) (*subLink, error) {
	l := ss.loop()
	k := &subLink{l: l}
	sink := &pushSink{
		msg:  func(rep []byte) { ss.subMsg(ps, sc, k, rep) },
		lost: func() { ss.subLost(ps, sc, k) },
	}
	ping := &request{done: make(chan struct{}, 1)}
	ch := make(chan error, 1)
	l.post(func() {
		if l.stopping {
			ch <- fmt.Errorf("%w: %v", ErrNotSent, errShuttingDown)
			return
		}
		b, err := l.takePriv(n, ss)
		if err != nil {
			ch <- err
			return
		}
		k.b = b
		b.priv.push = sink
		b.enqueue(&lreq{ext: ping, raw: pingCmd, slowEntry: true, start: l.nowNano})
		ch <- nil
	})
	if err := <-ch; err != nil {
		return nil, err
	}
	cfg := ss.s.conf()
	wait, cancel := context.WithTimeout(ctx, 2*cfg.BackendConnectTimeout+2*cfg.BackendReadTimeout)
	defer cancel()
	select {
	case <-ping.done:
	case <-wait.Done():
		k.close()
		return nil, fmt.Errorf("%w: %s did not answer: %w", ErrNotSent, n.addr, wait.Err())
	}
	if ping.err != nil {
		k.close()
		return nil, fmt.Errorf("%w: %s unreachable: %v", ErrNotSent, n.addr, ping.err)
	}
	return k, nil
}

// write queues cmd on the link's connection (in the order of the calls); a closed link
// drops it: its loss re-establishes the subscriptions.
func (k *subLink) write(cmd []byte) {
	l, b := k.l, k.b
	l.post(func() {
		if b.priv.dead || b.priv.push == nil {
			return
		}
		b.out = append(b.out, cmd...)
		b.queuedOff += int64(len(cmd))
		b.markDirty()
	})
}

// close closes the link's connection; its slot of blocking-connections is free again.
func (k *subLink) close() {
	b := k.b
	k.l.post(b.closePriv)
}

// subMsg is the relay of one frame read on sc's link k (on the loop): messages and
// confirmations are accounted and queued for the client in the order read.
func (ss *session) subMsg(ps *pubsubState, sc *subConn, k *subLink, rep []byte) {
	ps.mu.Lock()
	cur := sc.dc == k
	ps.mu.Unlock()
	if !cur {
		return // a replaced link
	}
	rep = append([]byte(nil), rep...)
	var out []byte
	var show, confirm, ok bool
	if sc.sharded {
		out, show, confirm = ps.account(sc, rep)
		ok = !show || ss.pushMsg(out)
	} else {
		ok, confirm = ss.relayRouted(ps, sc, rep)
	}
	if !ok {
		return // the session ended: closing it closes the connection
	}
	if confirm {
		ps.mu.Lock()
		if ps.expect > 0 {
			ps.expect--
		}
		ps.mu.Unlock()
		select {
		case ps.counted <- struct{}{}:
		default:
		}
	}
}

// subLost handles the loss of sc's link k (on the loop): nothing when the subscriptions
// ended (RESET, disconnect, shutdown); else shard channels are ended (endShard) and the
// others re-made on a reachable master (resubscribe), in a goroutine.
func (ss *session) subLost(ps *pubsubState, sc *subConn, k *subLink) {
	ps.mu.Lock()
	k.lost = true
	if sc.dc != k {
		ps.mu.Unlock()
		return
	}
	if ps.closed || k.l.stopping || ss.ctx.Err() != nil {
		sc.dc = nil
		ps.mu.Unlock()
		return
	}
	if sc.sharded {
		sc.dc = nil
	}
	ps.mu.Unlock()
	ss.log().Warn("subscription connection lost", "node", sc.node.addr, "sharded", sc.sharded)
	if sc.sharded {
		go ss.endShard(ps, sc)
		return
	}
	go ss.resubscribe(ps, sc)
}

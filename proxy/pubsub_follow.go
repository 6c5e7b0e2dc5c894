package proxy

import (
	"context"
	"slices"
	"sync"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// Subscriptions follow their slot: when a channel's slot moves to another master (a
// resharding, a failover learned from the map), its subscription moves to the new owner,
// where PUBLISH of the channel now goes; patterns and notification subscriptions are
// added on masters that joined. The client sees nothing of this: the nodes' confirmations
// are hidden, and a moved channel's messages are shown from its old connection until
// the new one confirms, then from the new one only.

// signal wakes every waiter once per notify.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed by the next notify.
func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// moving is a subscription connection's part in moves. Guarded by pubsubState.mu.
type moving struct {
	hidden  map[string]int  // kind NUL name: node confirmations of moves, not shown
	leaving map[string]bool // channels moved away whose new connection has not confirmed
	gone    map[string]bool // channels moved away and confirmed there: messages not shown
}

func (mv *moving) hide(kind, name string) {
	if mv.hidden == nil {
		mv.hidden = map[string]int{}
	}
	mv.hidden[kind+"\x00"+name]++
}

// movedConfirmation reports whether a confirmation on sc is one of a move (then hidden),
// and completes the move's bookkeeping. ps.mu is held.
func (ps *pubsubState) movedConfirmation(sc *subConn, kind string, rawName []byte) bool {
	name, _ := bulkValue(rawName)
	key := kind + "\x00" + name
	if sc.hidden[key] == 0 {
		return false
	}
	if sc.hidden[key]--; sc.hidden[key] == 0 {
		delete(sc.hidden, key)
	}
	switch kind {
	case "subscribe": // the new owner has it: the old connections' copies stop showing
		for _, x := range ps.all {
			if x.leaving[name] {
				delete(x.leaving, name)
				if x.gone == nil {
					x.gone = map[string]bool{}
				}
				x.gone[name] = true
			}
		}
	case "unsubscribe": // the old node sends no more of it
		delete(sc.leaving, name)
		delete(sc.gone, name)
	}
	return true
}

// followSlots moves the client's subscriptions after every change of slot owners, until
// the subscription state ends.
func (ss *session) followSlots(ps *pubsubState) {
	ch := ss.s.cl.ownerChanges.wait()
	for {
		select {
		case <-ch:
		case <-ps.quit:
			return
		case <-ss.ctx.Done():
			return
		}
		ch = ss.s.cl.ownerChanges.wait() // before the map is read: no change is missed
		ss.rehome(ps)
	}
}

// everywhere returns the patterns and notification channels the client's connections
// hold (those every master should hold). ps.mu is held.
func (ps *pubsubState) everywhere() (patterns, channels map[string]bool) {
	patterns, channels = map[string]bool{}, map[string]bool{}
	for _, sc := range ps.all {
		for p := range sc.patterns {
			patterns[p] = true
		}
		for c := range sc.channels {
			if notification([]byte(c)) {
				channels[c] = true
			}
		}
	}
	return patterns, channels
}

// rehome moves channel subscriptions to their slot's current master and adds the
// patterns and notification channels on masters that lack them: the connections the
// moves need are opened, then the moves planned and sent.
func (ss *session) rehome(ps *pubsubState) {
	ps.rehomeMu.Lock()
	defer ps.rehomeMu.Unlock()
	m := ss.s.cl.smap.Load()
	if m == nil {
		return
	}
	ps.mu.Lock()
	need, ok := ps.connsNeeded(m)
	ps.mu.Unlock()
	if !ok {
		return
	}
	ss.openSubConns(ps, need)

	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return
	}
	mv := ps.planMoves(m)
	mv.send(ps)
	if len(mv.subs)+len(mv.psubs)+len(mv.unsubs)+len(mv.punsubs) > 0 {
		ss.log().Debug("subscriptions follow their slots", "client_id", ss.id, "moved", len(mv.unsubs))
	}
}

// connsNeeded returns the masters the moves of m need a connection to and the client has
// none; false while a connection is being re-subscribed elsewhere (rehome runs again when
// that is done) or the state is closed. ps.mu is held.
func (ps *pubsubState) connsNeeded(m *slotMap) (map[*node]bool, bool) {
	for _, sc := range ps.all {
		if sc.dc == nil || ps.closed {
			// Being re-subscribed (on the master that replaced its node, which must not
			// get a second connection here): rehome runs again when that is done.
			return nil, false
		}
	}
	pats, notes := ps.everywhere()
	need := map[*node]bool{}
	for _, sc := range ps.all {
		for c := range sc.channels {
			if want := m.master(command.KeySlot([]byte(c))); !notification([]byte(c)) && want != sc.node && ps.conns[want] == nil {
				need[want] = true
			}
		}
	}
	if len(pats)+len(notes) > 0 {
		for _, n := range m.masters {
			if ps.conns[n] == nil {
				need[n] = true
			}
		}
	}
	return need, true
}

// openSubConns opens a subscription connection to each node of need.
func (ss *session) openSubConns(ps *pubsubState, need map[*node]bool) {
	for n := range need {
		ctx, cancel := context.WithTimeout(ss.ctx, ss.s.conf().BackendConnectTimeout)
		sc := &subConn{node: n, channels: map[string]bool{}, patterns: map[string]bool{}}
		dc, err := ss.openSubLink(ctx, n, ps, sc)
		cancel()
		if err != nil {
			ss.log().Warn("subscriptions cannot follow their slot", "node", n.addr, "err", err)
			continue
		}
		ps.mu.Lock()
		if ps.closed || ps.conns[n] != nil || !sc.adopt(dc) {
			ps.mu.Unlock()
			dc.close()
			continue
		}
		ps.conns[n] = sc
		ps.all = append(ps.all, sc)
		ps.mu.Unlock()
	}
}

// subMoves are the SUBSCRIBE/PSUBSCRIBE/UNSUBSCRIBE/PUNSUBSCRIBE a rehome sends, by
// connection.
type subMoves struct {
	subs, psubs, unsubs, punsubs map[*subConn][]string
}

// planMoves plans the moves for m: channels to their slot's master, patterns and
// notification channels on every master, none on a node that is no master. It updates
// the connections' records. ps.mu is held.
func (ps *pubsubState) planMoves(m *slotMap) subMoves {
	pats, notes := ps.everywhere()
	subs, psubs, unsubs := map[*subConn][]string{}, map[*subConn][]string{}, map[*subConn][]string{}
	for _, sc := range ps.all {
		if sc.dc == nil {
			continue // being re-subscribed elsewhere
		}
		for c := range sc.channels {
			want := m.master(command.KeySlot([]byte(c)))
			t := ps.conns[want]
			if notification([]byte(c)) || want == sc.node || t == nil || t.dc == nil {
				continue
			}
			if !t.channels[c] {
				t.channels[c] = true
				subs[t] = append(subs[t], c)
			}
			delete(sc.channels, c)
			if sc.leaving == nil {
				sc.leaving = map[string]bool{}
			}
			sc.leaving[c] = true
			unsubs[sc] = append(unsubs[sc], c)
		}
	}
	for _, n := range m.masters {
		t := ps.conns[n]
		if t == nil || t.dc == nil {
			continue
		}
		for p := range pats {
			if !t.patterns[p] {
				t.patterns[p] = true
				psubs[t] = append(psubs[t], p)
			}
		}
		for c := range notes {
			if !t.channels[c] {
				t.channels[c] = true
				subs[t] = append(subs[t], c)
			}
		}
	}
	// A node that is no master any more (a frozen master replaced, then back as a
	// replica) gives up its patterns and notification channels: the masters have them.
	punsubs := map[*subConn][]string{}
	for _, sc := range ps.all {
		if sc.dc == nil || slices.Contains(m.masters, sc.node) {
			continue
		}
		for p := range sc.patterns {
			delete(sc.patterns, p)
			punsubs[sc] = append(punsubs[sc], p)
		}
		for c := range sc.channels {
			if notification([]byte(c)) {
				delete(sc.channels, c)
				unsubs[sc] = append(unsubs[sc], c)
			}
		}
		ps.movePatternHome(sc)
	}
	return subMoves{subs: subs, psubs: psubs, unsubs: unsubs, punsubs: punsubs}
}

// send writes the planned moves: the new subscriptions first, then the ones given up.
// ps.mu is held.
func (mv subMoves) send(ps *pubsubState) {
	send := func(sc *subConn, kind string, names []string) {
		if len(names) == 0 {
			return
		}
		args := [][]byte{[]byte(kind)}
		for _, n := range names {
			args = append(args, []byte(n))
		}
		if sc.write(args) != nil {
			return // the connection is lost: its re-subscription carries its state
		}
		for _, n := range names {
			sc.hide(kind, n)
		}
	}
	for _, sc := range ps.all {
		send(sc, "subscribe", mv.subs[sc])
		send(sc, "psubscribe", mv.psubs[sc])
	}
	for _, sc := range ps.all {
		send(sc, "unsubscribe", mv.unsubs[sc])
		send(sc, "punsubscribe", mv.punsubs[sc])
	}
}

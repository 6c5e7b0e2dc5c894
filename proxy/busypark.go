package proxy

import "time"

// Parking the connection that runs a script. Redis reads nothing more from the connection
// of a script's caller until the script ends, while it answers every other connection
// -BUSY once the script runs past busy-reply-threshold. A loop's pipelined connection to
// the node carries the script and, behind it, the commands of the loop's other clients
// for that node: they would wait for the script (up to backend-busy-timeout) where a
// client of a single Redis gets -BUSY at once. So when the node is known to run a script
// (a -BUSY reply or probe within holdWindow, busy.go) and a loop's
// connection to it has waited longer than backend-suspect-after, that connection is
// parked: it keeps reading the replies of the commands written on it (the script's result
// or error, then theirs) and is closed once they are all answered (or fail after
// backend-busy-timeout); the loop's next command for the node opens a new connection,
// which the node answers -BUSY like any other.
//
// Order: a client with commands still unanswered does not send more to a node that has a
// parked connection until they are answered (lclient.ordered): a later command on the new
// connection could otherwise run before an earlier one still queued behind the script.
// A slow-path command of a session that has commands on the parked connection follows
// them there (sendExt).

// park moves b (the loop's connection to its node) aside; the next command for the node
// gets a new connection.
func (l *loop) park(b *lbackend) {
	if b.parked || l.backends[b.n] != b {
		return
	}
	delete(l.backends, b.n)
	b.parked = true
	l.parked = append(l.parked, b)
	l.s.log.Debug("connection waiting behind a script parked; new commands for the node get a new connection",
		"node", b.n.addr, "loop", l.id, "in_flight", b.inflight.len())
}

// parkedNode reports whether the loop has a parked connection to n.
func (l *loop) parkedNode(n *node) bool {
	for _, b := range l.parked {
		if b.n == n {
			return true
		}
	}
	return false
}

// parkedFor returns the parked connection to n that still holds a command of session ss
// (its slow-path commands follow them there), or nil.
func (l *loop) parkedFor(n *node, ss *session) *lbackend {
	if ss == nil {
		return nil
	}
	for _, b := range l.parked {
		if b.n != n || b.fd < 0 {
			continue
		}
		q := &b.inflight
		for i := 0; i < q.n; i++ {
			r := q.buf[(q.head+i)&(len(q.buf)-1)]
			if r.ext != nil && r.ext.owner == ss || r.c != nil && r.c.ss == ss {
				return b
			}
		}
	}
	return nil
}

// tickParked checks the parked connections' timeouts and closes those with nothing left
// to answer.
func (l *loop) tickParked(timeout, suspectAfter time.Duration) {
	for i := 0; i < len(l.parked); {
		b := l.parked[i]
		if b.inflight.len() > 0 {
			b.checkTimeout(timeout, suspectAfter)
		}
		if b.inflight.len() == 0 {
			l.closeParked(b)
			continue
		}
		i++
	}
}

// closeParked closes a parked connection that has nothing left to answer and forgets it.
func (l *loop) closeParked(b *lbackend) {
	if b.fd >= 0 {
		l.unregister(b.fd)
		b.fd = -1
		b.n.c.metrics.backendConns.WithLabelValues(b.n.addr).Dec()
	}
	b.releaseSegs(l)
	b.dropChunk()
	for i, p := range l.parked {
		if p == b {
			l.parked = append(l.parked[:i], l.parked[i+1:]...)
			break
		}
	}
}

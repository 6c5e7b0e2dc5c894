package proxy

import (
	"fmt"
	"time"
)

// A hold is the first step of a planned handover (internal/handover): the endpoint stops
// reading its clients' next commands until the VIP has moved, so that when it moves every
// client that is sending is waiting for an answer instead of sending.
//
// Why: once another host has the VIP, a client's packets on a connection to this host go
// to the new MASTER, which has no such socket and resets it; a command sent then fails
// (it ran nowhere). Packets from this host to the client still arrive, from the VIP,
// which stays configured here in BACKUP. So a command the kernel received before the move
// can still be answered after it. During a hold the endpoint answers every command it
// already read, and leaves the next ones in the socket: a request/response client sends
// one and waits. When this host goes BACKUP, the gate drains the endpoint (CloseClients)
// and closes the listener; held clients stay held. Once the new MASTER serves the VIP
// (its listener is open, so no reconnect is refused), the handover command releases the
// hold: the drain reads what the clients sent, answers it, and closes each connection at
// its request boundary, the last reply and the close in one segment (flush). The client
// reads its answer and the close, and its next command goes to a new connection, to the
// new MASTER.
//
// A hold ends with Release or after its duration: a handover whose VIP does not move
// never leaves clients waiting longer than that, and a drain's grace period
// (drain-timeout) closes held clients as any other.

// HoldStatus counts an endpoint's clients during a hold.
type HoldStatus struct {
	// Clients are the endpoint's client connections.
	Clients int
	// Waiting have sent a command the hold keeps (not read, or read and not started), or
	// wait on a blocking command.
	Waiting int
	// Recent are being answered, or sent a command in the last HoldRecent: they are
	// expected to send again, and the hold settles once they have.
	Recent int
}

// HoldRecent is how recently a client must have sent a command for a hold to wait for its
// next one (HoldStatus.Recent).
const HoldRecent = 200 * time.Millisecond

// Hold holds the endpoint's clients for at most d (see the comment above): commands
// already read are answered, the next ones are left in their sockets until Release or d,
// also through the drain that follows this host's BACKUP. Clients accepted meanwhile are
// held too.
// It returns the clients' state at once; HoldStatus follows it.
func (e *Endpoint) Hold(d time.Duration) (HoldStatus, error) {
	if d <= 0 {
		return HoldStatus{}, fmt.Errorf("proxy: hold %s: duration %v", e.vip, d)
	}
	until := time.Now().Add(d)
	e.holdMu.Lock()
	e.holdUntil = until
	e.holdGen++
	gen := e.holdGen
	if e.holdTimer != nil {
		e.holdTimer.Stop()
	}
	e.holdTimer = time.AfterFunc(d, func() { e.expire(gen) })
	e.holdMu.Unlock()
	e.log.Warn("handover: holding the clients' next commands until this host is BACKUP", "for", d)
	e.s.metrics.handoverHolds.Inc()
	return e.eachLoop(func(c *lclient) { c.setHold(true) })
}

// Release ends a hold: the clients are read again.
func (e *Endpoint) Release() {
	if e.endHold() {
		e.log.Info("handover: hold released; clients are read again")
		e.eachLoop(func(c *lclient) { c.setHold(false) })
	}
}

// HoldStatus counts the endpoint's clients (see HoldStatus).
func (e *Endpoint) HoldStatus() (HoldStatus, error) {
	return e.eachLoop(nil)
}

// expire releases the hold of generation gen when its time is up.
func (e *Endpoint) expire(gen uint64) {
	e.holdMu.Lock()
	cur := e.holdGen == gen && !e.holdUntil.IsZero()
	e.holdMu.Unlock()
	if cur {
		e.log.Warn("handover: hold expired without a release; clients are read again")
		e.Release()
	}
}

// endHold clears the hold and reports whether there was one.
func (e *Endpoint) endHold() bool {
	e.holdMu.Lock()
	defer e.holdMu.Unlock()
	was := !e.holdUntil.IsZero()
	e.holdUntil = time.Time{}
	e.holdGen++
	if e.holdTimer != nil {
		e.holdTimer.Stop()
		e.holdTimer = nil
	}
	return was
}

// holding reports whether clients accepted now are held.
func (e *Endpoint) holding() bool {
	e.holdMu.Lock()
	defer e.holdMu.Unlock()
	return !e.holdUntil.IsZero() && time.Now().Before(e.holdUntil)
}

// eachLoop runs f (if not nil) on each of the endpoint's clients, on its loop, then
// counts them.
func (e *Endpoint) eachLoop(f func(*lclient)) (HoldStatus, error) {
	var st HoldStatus
	for _, l := range e.s.loops {
		ran := l.call(func() {
			for c := range l.clients {
				if c.ss.ep != e || c.closed {
					continue
				}
				if f != nil {
					f(c)
				}
				if !c.closed {
					c.countHold(&st)
				}
			}
		}, 5*time.Second)
		if !ran {
			return st, fmt.Errorf("proxy: hold %s: event loop %d did not answer", e.vip, l.id)
		}
	}
	return st, nil
}

// setHold holds or releases the client (on its loop).
func (c *lclient) setHold(on bool) {
	if c.closed || c.hold == on {
		return
	}
	c.hold = on
	if on {
		c.updateInterest()
		return
	}
	if c.draining {
		c.drainSince = c.l.nowNano // its read window starts now
	}
	if len(c.in) > 0 && !c.paused && !c.busy {
		c.processSafe(c.in) // commands read before the hold and not started
		return
	}
	c.flush() // a draining client with nothing sent closes now; others are read again
}

// countHold adds the client to st (on its loop). A client whose command is still being
// answered is not settled: it may send its next one only after the VIP moved.
func (c *lclient) countHold(st *HoldStatus) {
	st.Clients++
	switch {
	case c.busy: // a blocking command (BLPOP …): it waits for its answer
		st.Waiting++
	case c.fifo.len() > 0 || c.outPending() > 0:
		st.Recent++
	case len(c.in) > 0 || c.inputWaiting():
		st.Waiting++
	case c.l.nowNano-c.lastActive < int64(HoldRecent):
		st.Recent++
	}
}

package proxy

import "sync"

// msgQueue holds the Pub/Sub messages (and confirmations) that subscription relays
// produce for one client until its event loop writes them. push asks the loop to pull
// (once per batch: the request is armed again by takeAll).
type msgQueue struct {
	mu     sync.Mutex
	msgs   [][]byte
	asked  bool          // the loop was asked to pull and has not yet
	wake   func()        // asks the loop to pull
	pushed chan struct{} // signalled on push (for a command collecting confirmations)
}

func newMsgQueue(wake func()) *msgQueue {
	return &msgQueue{wake: wake, pushed: make(chan struct{}, 1)}
}

// push queues a message.
func (q *msgQueue) push(msg []byte) {
	q.mu.Lock()
	q.msgs = append(q.msgs, msg)
	ask := !q.asked
	q.asked = true
	q.mu.Unlock()
	if ask {
		q.wake()
	}
	select {
	case q.pushed <- struct{}{}:
	default:
	}
}

// takeMsgs returns and removes the queued messages, for a command collecting them; the
// loop's pull request stays armed.
func (q *msgQueue) takeMsgs() [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	m := q.msgs
	q.msgs = nil
	return m
}

// takeAll returns and removes the queued messages for the loop, and arms the pull request
// again for the next push.
func (q *msgQueue) takeAll() [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	m := q.msgs
	q.msgs = nil
	q.asked = false
	return m
}

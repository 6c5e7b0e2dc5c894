package proxy

import (
	"bufio"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// An idle client connection should cost the proxy little memory (thousands of pooled
// webserver connections sit idle most of the time). So a session holds its read buffers
// only while the client is active (they are dropped after readRelease without a command and
// allocated again when the next byte arrives), takes its write buffer from a pool only
// while replies are being written, and queues pending commands in a slice that grows
// with the actual pipeline instead of a channel sized for the maximum depth.

// readRelease is how long a client must be quiet before its read buffers are dropped.
const readRelease = 2 * time.Second

// reqQueue is the FIFO of commands read but not yet answered, plus the Pub/Sub messages
// waiting for the writer. put blocks while the queue holds client-pipeline-depth commands
// (back-pressure: the client is not read meanwhile). The writer goroutine runs only while
// there is something to write: put, push and close start it when it is not running, and it
// exits when it finds nothing left, so an idle client costs one goroutine (its reader).
type reqQueue struct {
	mu      sync.Mutex
	q       []*request
	msgs    [][]byte // Pub/Sub messages
	closed  bool
	running bool          // a writer goroutine is running
	space   chan struct{} // one token per queued command; capacity is the depth
	start   func()        // starts a writer goroutine
	pushed  chan struct{} // signalled on push (for a writer collecting confirmations)
}

func newReqQueue(depth int, start func()) *reqQueue {
	return &reqQueue{space: make(chan struct{}, depth), start: start, pushed: make(chan struct{}, 1)}
}

// wakeLocked starts the writer if it is not running; q.mu is held and released.
func (q *reqQueue) wakeLocked() {
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		q.start()
	}
}

// put queues r; it reports false if ctx ended first.
func (q *reqQueue) put(ctx context.Context, r *request) bool {
	select {
	case q.space <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	q.mu.Lock()
	q.q = append(q.q, r)
	q.wakeLocked()
	return true
}

// push queues a Pub/Sub message.
func (q *reqQueue) push(msg []byte) {
	q.mu.Lock()
	q.msgs = append(q.msgs, msg)
	q.wakeLocked()
	select {
	case q.pushed <- struct{}{}:
	default:
	}
}

// takeMsgs returns and removes the queued Pub/Sub messages.
func (q *reqQueue) takeMsgs() [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	m := q.msgs
	q.msgs = nil
	return m
}

// close marks the end of the queue: the writer finishes the session once it is empty.
func (q *reqQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.wakeLocked()
}

// next returns, for the writer, the queued Pub/Sub messages if any, else the oldest
// command, else closed (the reader is done and everything is written), else nothing.
func (q *reqQueue) next() (r *request, msgs [][]byte, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.msgs) > 0 {
		msgs, q.msgs = q.msgs, nil
		return nil, msgs, false
	}
	if len(q.q) == 0 {
		if cap(q.q) > 64 {
			q.q = nil // give a burst's backing array back
		}
		return nil, nil, q.closed
	}
	r = q.q[0]
	q.q[0] = nil
	q.q = q.q[1:]
	<-q.space
	return r, nil, false
}

// takeAll returns and removes the queued Pub/Sub messages and marks the queue as not
// being written, so that the next push starts the writer (for a loop client: asks the loop
// to write) again.
func (q *reqQueue) takeAll() [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	m := q.msgs
	q.msgs = nil
	q.running = false
	return m
}

// idle reports whether nothing is waiting for the writer.
func (q *reqQueue) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.q) == 0 && len(q.msgs) == 0
}

// stop lets the writer exit if nothing is waiting; otherwise it must go on.
func (q *reqQueue) stop() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.q) > 0 || len(q.msgs) > 0 || q.closed {
		return false
	}
	q.running = false
	return true
}

// cmdReader is the command reader of an active client: whole commands over the guard
// (cmdframe.go).
type cmdReader = frameReader

func newCmdReader(g *guard, work *atomic.Int64) *cmdReader { return newFrameReader(g, work) }

// idle reports whether every byte read so far has been parsed into returned commands, so
// the reader can be dropped without losing anything.
func (g *guard) idle() bool { return g.state == gStart && len(g.held) == 0 && g.err == nil }

// writeBufs pools the 16 KiB reply buffers; a session holds one only while writing.
var writeBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}

// lazyWriter buffers replies to conn with a pooled buffer.
type lazyWriter struct {
	conn net.Conn
	bw   *bufio.Writer
}

func (w *lazyWriter) Write(b []byte) (int, error) {
	if w.bw == nil {
		w.bw = writeBufs.Get().(*bufio.Writer)
		w.bw.Reset(w.conn)
	}
	return w.bw.Write(b)
}

func (w *lazyWriter) Buffered() int {
	if w.bw == nil {
		return 0
	}
	return w.bw.Buffered()
}

// Flush writes what is buffered; with release it also returns the buffer to the pool.
func (w *lazyWriter) Flush(release bool) error {
	if w.bw == nil {
		return nil
	}
	err := w.bw.Flush()
	if release && err == nil {
		w.bw.Reset(nil)
		writeBufs.Put(w.bw)
		w.bw = nil
	}
	return err
}

package proxy

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/netpoll"
)

// A panic while serving one client must cost that client its connection, not every client
// the process serves (daemon(8) would restart it, and a client that can trigger the panic
// could repeat it at will). Every per-client boundary recovers: an event loop's handling of
// one connection's events and of one posted task, the slow-path goroutine of a loop client,
// and a goroutine session's reader and writer. The panic is logged with its stack, counted
// in redis_carp_proxy_panics_recovered_total{where} and the client is closed.

// panicHook, when set (by tests, through export_test.go), is called with where ("loop",
// "slow", "session") and the arguments of every command where that path starts serving it:
// the seam that proves a panic there stays within one client.
var panicHook atomic.Pointer[func(where string, args [][]byte)]

// errPanic fails the commands of a backend connection whose handling panicked.
var errPanic = errors.New("internal error (recovered panic)")

// replyPanic answers the command whose handling panicked; the client is then closed.
var replyPanic = []byte("-ERR proxy: internal error; closing the connection\r\n")

func callPanicHook(where string, args [][]byte) {
	if f := panicHook.Load(); f != nil {
		(*f)(where, args)
	}
}

// clientPanic logs and counts a panic recovered at a per-client boundary.
func (s *Server) clientPanic(where string, id uint64, v any) {
	s.metrics.sec.panics.WithLabelValues(where).Inc()
	s.log.Error("panic while serving a client; closing that client", "where", where, "client_id", id,
		"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
}

// handle runs the handlers of one poller event, recovering a panic: a client's connection
// is closed; a backend connection is closed and its commands failed.
func (l *loop) handle(e netpoll.Event, h fdHandler) {
	defer l.recoverHandler(h)
	if e.Writable {
		h.writable()
	}
	if e.Readable && l.fds[e.Fd] == h {
		h.readable()
	}
}

func (l *loop) recoverHandler(h fdHandler) {
	v := recover()
	if v == nil {
		return
	}
	if t, ok := h.(tlsFD); ok { // a loop-served TLS client (tlsloop.go)
		h = t.c
	}
	switch x := h.(type) {
	case *lclient:
		l.s.clientPanic("loop", x.ss.id, v)
		x.processing = false
		x.close()
	case *lbackend:
		l.s.clientPanic("loop_backend", 0, v)
		x.failAll(errPanic, fmt.Errorf("%w: %v", errPanic, v), "panic")
	default:
		l.s.clientPanic("loop", 0, v)
	}
}

// processSafe is c.process for commands resumed from another connection's event (a
// backend's reply, a task): a panic closes c, not the connection whose event it was.
func (c *lclient) processSafe(data []byte) {
	defer func() {
		if v := recover(); v != nil {
			c.l.s.clientPanic("loop", c.ss.id, v)
			c.processing = false
			c.close()
		}
	}()
	c.process(data)
}

// flushOne writes what h has pending (a client's replies, which may resume its paused
// commands, or a backend's commands), recovering a panic as handle does.
func (l *loop) flushOne(h fdHandler) {
	defer l.recoverHandler(h)
	h.writable()
}

// runTask runs one task posted to the loop, recovering a panic (the task's client is not
// known here: it is logged and counted, and the loop goes on).
func (l *loop) runTask(f func()) {
	defer func() {
		if v := recover(); v != nil {
			l.s.clientPanic("loop_task", 0, v)
		}
	}()
	f()
}

// recoverSlow is deferred by the slow-path goroutine of a loop client: the command gets an
// error and the client is closed once it is written.
func (c *lclient) recoverSlow(r *lreq) {
	v := recover()
	if v == nil {
		return
	}
	c.l.s.clientPanic("slow", c.ss.id, v)
	c.l.post(func() { c.slowDone(r, replyPanic, false, true) })
}

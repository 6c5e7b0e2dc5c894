package proxy

// afterExit is the state of a loop whose goroutine has returned. Work still reaches it
// then: a backend dial that completes after the loop stopped posts its descriptor
// (lbackend.dial), an accepted client is posted to the loop it was assigned (acceptLoop).
// Such tasks must not be lost with their descriptors, nor wake a poller whose descriptors
// are closed (and whose numbers the kernel may have handed out again: netpoll.ErrClosed).
// They run, one at a time and in order as on the loop, on a goroutine started for them,
// with l.stopping set: dialed closes the descriptor, accept finds the poller closed and
// closes the client.
type afterExit struct {
	exited   bool // the loop goroutine has returned (guarded by loop.mu)
	draining bool // a goroutine is running the queued tasks (guarded by loop.mu)
}

// exit is the loop goroutine's last act (after shutdown): tasks posted from now on run
// through runAfterExit; those already queued run here.
func (l *loop) exit() {
	l.mu.Lock()
	l.after.exited, l.after.draining = true, true
	l.mu.Unlock()
	l.runAfterExit()
}

// postAfterExit is post's path once the loop has exited: f is queued and l.mu held; it
// releases l.mu.
func (l *loop) postAfterExit() {
	if l.after.draining {
		l.mu.Unlock()
		return
	}
	l.after.draining = true
	l.mu.Unlock()
	go l.runAfterExit()
}

// runAfterExit runs the queued tasks until there are none.
func (l *loop) runAfterExit() {
	for {
		l.mu.Lock()
		tasks := l.tasks
		l.tasks = nil
		if len(tasks) == 0 {
			l.after.draining = false
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		for _, f := range tasks {
			f()
		}
	}
}

package proxy

import "time"

// SetPanicHook makes f run where each command starts being served (see panicHook); the
// returned function removes it.
func SetPanicHook(f func(where string, args [][]byte)) (restore func()) {
	old := panicHook.Swap(&f)
	return func() { panicHook.Store(old) }
}

// ParseWork is the number of bytes handed to the command parser so far, by every event
// loop.
func (s *Server) ParseWork() int64 {
	var n int64
	for _, l := range s.loops {
		var v int64
		l.call(func() { v = l.parseWork }, 5*time.Second)
		n += v
	}
	return n
}

// SetTrackingInvalidationDelay makes the proxy wait d before handling each invalidation
// message a node sends (a slow invalidation connection).
func (s *Server) SetTrackingInvalidationDelay(d time.Duration) { s.track.slowInval.Store(int64(d)) }

// SetTrackIdleStop sets how long the tracking invalidation connections outlive the last
// tracking client; the returned function restores it.
func SetTrackIdleStop(d time.Duration) (restore func()) {
	old := trackIdleStop
	trackIdleStop = d
	return func() { trackIdleStop = old }
}

// TrackingConnections returns the number of open invalidation connections.
func (s *Server) TrackingConnections() int {
	s.track.mu.Lock()
	defer s.track.mu.Unlock()
	n := 0
	for _, ic := range s.track.conns {
		ic.mu.Lock()
		if ic.up {
			n++
		}
		ic.mu.Unlock()
	}
	return n
}

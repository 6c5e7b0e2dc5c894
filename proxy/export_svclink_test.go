package proxy

import "time"

// ServiceConns returns the number of service connections (svclink.go) the first event loop
// holds: private node connections in push mode bound to no session.
func (s *Server) ServiceConns() int {
	l := s.loops[0]
	n := -1
	l.call(func() {
		n = 0
		for b := range l.privAll {
			if b.priv.ss == nil && b.priv.push != nil {
				n++
			}
		}
	}, 5*time.Second)
	return n
}

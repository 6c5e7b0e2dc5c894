package proxy

import (
	"sync"
	"time"
)

// Failed AUTH attempts (AUTH and HELLO … AUTH) are counted in auth_failures_total and
// logged with the client's address and user, at most once a second (the line says how
// many were not logged since the last one), so that guessing cannot flood the log. After
// auth-max-failures failures on one connection it gets an error and is closed (counted in
// client_connections_rejected_total{reason="auth_failures"}): a guesser must reconnect,
// and within client-auth-timeout.

var replyAuthTooMany = []byte("-ERR too many failed authentication attempts; closing the connection\r\n")

// authFailLog rate-limits the log line of failed authentications.
type authFailLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// authFailed records a failed attempt of ss (r is its command) and returns the reply.
func (ss *session) authFailed(r *request, user string) []byte {
	s := ss.s
	s.metrics.sec.authFailures.Inc()
	ss.authFail++
	s.authFails.mu.Lock()
	now := time.Now()
	logIt := now.Sub(s.authFails.last) >= time.Second
	suppressed := s.authFails.suppressed
	if logIt {
		s.authFails.last, s.authFails.suppressed = now, 0
	} else {
		s.authFails.suppressed++
	}
	s.authFails.mu.Unlock()
	if logIt {
		ss.log().Warn("client authentication failed", "client_id", ss.id, "addr", ss.conn.RemoteAddr().String(),
			"user", user, "failures_on_connection", ss.authFail, "not_logged_since_last", suppressed)
	}
	if max := s.conf().AuthMaxFailures; max > 0 && ss.authFail >= max {
		vip := ""
		if ss.ep != nil {
			vip = ss.ep.vip
		}
		s.metrics.clientsRejected.WithLabelValues(vip, "auth_failures").Inc()
		r.slot = slotQuit // answered, then the connection is closed (as QUIT)
		return replyAuthTooMany
	}
	return replyWrongPass
}

package proxy

import (
	"crypto/tls"
	"time"
)

// A connection counts against maxclients from the moment it is accepted. So that silent
// connections cannot hold every slot, a client must finish its TLS handshake and, when
// authentication is required, AUTH within client-auth-timeout of connecting (Redis has no
// such limit, but its clients are not reachable by everyone on a VIP); past it the
// connection is closed and counted in client_connections_rejected_total{reason=
// "auth_timeout"}. client-idle-timeout (0 by default) is a separate limit.

// authPending reports whether ss has not yet completed its TLS handshake or its AUTH.
// Only the session's reader calls it (authed is the reader's).
func (ss *session) authPending() bool {
	if !ss.authed {
		return true
	}
	if tc, ok := ss.conn.(*tls.Conn); ok {
		return !tc.ConnectionState().HandshakeComplete
	}
	return false
}

// authDeadline is when ss is closed unless it has completed its handshake and AUTH (zero:
// no deadline).
func (ss *session) authDeadline(timeout time.Duration) time.Time {
	if timeout <= 0 || !ss.authPending() {
		return time.Time{}
	}
	return ss.cs.created.Add(timeout)
}

// authExpired reports (and counts) that ss's deadline has passed.
func (ss *session) authExpired(timeout time.Duration) bool {
	dl := ss.authDeadline(timeout)
	if dl.IsZero() || time.Now().Before(dl) {
		return false
	}
	ss.authTimedOut()
	return true
}

func (ss *session) authTimedOut() {
	vip := ""
	if ss.ep != nil {
		vip = ss.ep.vip
	}
	ss.s.metrics.clientsRejected.WithLabelValues(vip, "auth_timeout").Inc()
	ss.log().Info("client closed: no AUTH within client-auth-timeout", "client_id", ss.id, "addr", ss.conn.RemoteAddr().String())
}

// checkAuthDeadline closes a loop client that has not authenticated within timeout (on the
// loop's tick; plain TCP has no handshake).
func (c *lclient) checkAuthDeadline(timeout time.Duration) {
	if timeout <= 0 || c.authed || c.closed || c.busy {
		return
	}
	if c.l.now.Sub(c.ss.cs.created) < timeout {
		return
	}
	c.ss.authTimedOut()
	c.close()
}

package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"time"
)

// A connection counts against maxclients from the moment it is accepted. So that silent
// connections cannot hold every slot, a client must finish its TLS handshake and, when
// authentication is required, AUTH within client-auth-timeout of connecting (Redis has no
// such limit, but its clients are not reachable by everyone on a VIP); past it the
// connection is closed and counted in client_connections_rejected_total{reason=
// "auth_timeout"}. client-idle-timeout (0 by default) is a separate limit.

// authTimedOut counts and logs a client closed for client-auth-timeout.
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

// tlsHandshake completes a TLS client's handshake within client-auth-timeout, before the
// client is handed to an event loop (in its own goroutine: the accept loop goes on).
func (s *Server) tlsHandshake(ep *Endpoint, tc *tls.Conn) error {
	ctx := s.ctx
	if to := s.conf().ClientAuthTimeout; to > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, to)
		defer cancel()
	}
	err := tc.HandshakeContext(ctx)
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) {
		s.metrics.clientsRejected.WithLabelValues(ep.vip, "auth_timeout").Inc()
		ep.log.Info("TLS client closed: no handshake within client-auth-timeout", "addr", tc.RemoteAddr().String())
	} else {
		ep.log.Debug("TLS handshake failed", "addr", tc.RemoteAddr().String(), "err", err)
	}
	tc.Close()
	return err
}

package proxy

import (
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Endpoint is the proxy as seen on one virtual address (VIP): its own listeners (plain and
// TLS), its own clients, host state and metric series (label vip), over the slot map and
// backend connections the Server shares between every VIP. The daemon drives one Endpoint
// per VIP through internal/gate: Serve while this host is CARP MASTER of the VIP,
// CloseClients when it stops being so; the other VIPs' clients are not touched.
type Endpoint struct {
	s     *Server
	vip   string
	log   *slog.Logger
	state atomic.Pointer[func() HostState]

	clients atomic.Int64

	// The hold of a planned handover (hold.go).
	holdMu    sync.Mutex
	holdUntil time.Time // zero: no hold
	holdGen   uint64
	holdTimer *time.Timer

	current  prometheus.Gauge
	accepted prometheus.Counter
	closed   prometheus.Counter
}

// Endpoint returns the endpoint of vip, creating it on first use (its metric series then
// exist at 0). vip is a label value and log field, normally the virtual address.
func (s *Server) Endpoint(vip string) *Endpoint {
	s.epMu.Lock()
	defer s.epMu.Unlock()
	for _, e := range s.endpoints {
		if e.vip == vip {
			return e
		}
	}
	e := &Endpoint{
		s: s, vip: vip, log: s.log.With("vip", vip),
		current:  s.metrics.clientsCurrent.WithLabelValues(vip),
		accepted: s.metrics.clientsAccepted.WithLabelValues(vip),
		closed:   s.metrics.clientsClosed.WithLabelValues(vip),
	}
	s.endpoints = append(s.endpoints, e)
	return e
}

// Endpoints returns the endpoints in the order they were created.
func (s *Server) Endpoints() []*Endpoint {
	s.epMu.Lock()
	defer s.epMu.Unlock()
	return slices.Clone(s.endpoints)
}

// LookupEndpoint returns the endpoint of vip if it exists.
func (s *Server) LookupEndpoint(vip string) (*Endpoint, bool) {
	s.epMu.Lock()
	defer s.epMu.Unlock()
	for _, e := range s.endpoints {
		if e.vip == vip {
			return e, true
		}
	}
	return nil, false
}

// defaultEndpoint is the endpoint of Server.Serve: the configured vip, else the host of
// listen, else the host the listener is bound to.
func (s *Server) defaultEndpoint(ln net.Listener) *Endpoint {
	vip := s.conf().VIP
	if vip == "" {
		vip, _, _ = net.SplitHostPort(s.conf().Listen)
	}
	if vip == "" && ln != nil {
		vip, _, _ = net.SplitHostPort(ln.Addr().String())
	}
	return s.Endpoint(vip)
}

// VIP returns the endpoint's virtual address (its label).
func (e *Endpoint) VIP() string { return e.vip }

// Serve accepts clients on ln for this endpoint until ln is closed; a closed listener is
// a clean stop and returns nil. Connections already accepted keep running.
func (e *Endpoint) Serve(ln net.Listener) error { return e.s.serve(e, ln) }

// CloseClients drains this endpoint's clients (see Server.CloseClients); the clients of
// other endpoints are not touched.
func (e *Endpoint) CloseClients(grace time.Duration) {
	s := e.s
	s.mu.Lock()
	var list []*session
	for ss := range s.sessions { // one map of sessions (Server's): an idle client costs less
		if ss.ep == e {
			list = append(list, ss)
		}
	}
	s.mu.Unlock()
	closeSessions(list, grace)
}

// Clients returns the number of client connections open on this endpoint.
func (e *Endpoint) Clients() int { return int(e.clients.Load()) }

// SetHostState installs the function reporting this VIP's host state (CARP state, whether
// its listener is open). Without one the endpoint reports the Server's (SetHostState).
func (e *Endpoint) SetHostState(f func() HostState) {
	if f == nil {
		e.state.Store(nil)
		return
	}
	e.state.Store(&f)
}

// HostState returns the endpoint's host state.
func (e *Endpoint) HostState() HostState {
	if f := e.state.Load(); f != nil {
		return (*f)()
	}
	return e.s.serverHostState()
}

// opened registers a session accepted on the endpoint.
func (e *Endpoint) opened(ss *session) {
	ss.ep = e
	e.clients.Add(1)
	e.accepted.Inc()
	e.current.Inc()
}

// closedSession unregisters a session that ended.
func (e *Endpoint) closedSession(ss *session) {
	e.clients.Add(-1)
	e.current.Dec()
	e.closed.Inc()
}

// log returns the session's logger: the endpoint's (it names the VIP) once accepted.
func (ss *session) log() *slog.Logger {
	if ss.ep != nil {
		return ss.ep.log
	}
	return ss.s.log
}

// closeSessions stops reading new commands from every session of list, lets in-flight
// commands be answered for up to grace, then closes the connections. It returns when all
// are closed.
func closeSessions(list []*session, grace time.Duration) {
	for _, ss := range list {
		ss.drain()
	}
	done := make(chan struct{})
	go func() {
		for _, ss := range list {
			<-ss.closed
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		for _, ss := range list {
			ss.conn.Close()
			ss.cancel() // also ends commands waiting on a dedicated connection (BLPOP …)
		}
		<-done
	}
}

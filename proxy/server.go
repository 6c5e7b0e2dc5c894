// Package proxy makes a Redis Cluster look like one Redis server. It accepts RESP clients,
// computes each command's hash slot, sends each command to the node that owns the slot
// (from event loops, for plain and TLS clients alike), follows MOVED/ASK/TRYAGAIN
// itself and answers every client's commands strictly in order. It reads the client,
// cluster and backend keys of the daemon's configuration (internal/config) and none of the
// CARP or pf keys: an Endpoint per VIP is started on a listener and can be drained; which
// host serves is decided by the daemon (internal/gate, package carp).
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

// Config is the daemon configuration; the proxy reads the client, cluster and backend keys.
// The package is internal, like the configuration, so the two are one type.
type Config = config.Config

// Version is reported by INFO and HELLO.
var Version = "0.1.0"

// Server is the proxy. Create it with NewServer, call Start once, then Serve on one or more
// listeners (and again after CloseClients, when CARP state flips back).
type Server struct {
	cfgp atomic.Pointer[Config]
	deny atomic.Pointer[map[string]bool]

	gcRunning atomic.Bool // collectFreed's collection runs (clientmem.go)
	log       *slog.Logger
	metrics   *Metrics
	cl        *cluster
	ctx       context.Context
	cancel    context.CancelFunc
	started   time.Time
	privSlots chan struct{} // blocking-connections: a slot per bound private node connection (private.go)
	scripts   scriptCache
	slow      slowlog
	mon       monitorHub // MONITOR (monitor.go)
	hot       *hotkeys

	hostState atomic.Pointer[func() HostState]

	// The event loops serving plain TCP clients (none: every client gets goroutines), the
	// fast table they route by, and the request-path counters of everything else.
	loops     []*loop
	nextLoop  atomic.Uint32
	fast      atomic.Pointer[map[string]*fastCmd]
	epMu      sync.Mutex
	endpoints []*Endpoint // one per VIP (endpoint.go)

	mu        sync.Mutex
	sessions  map[*session]struct{}
	loopErr   error // the event loops could not start (no poller): Start fails with it
	clients   atomic.Int64
	blocked   atomic.Int64 // clients in a blocking command (INFO blocked_clients)
	nextID    atomic.Uint64
	wg        sync.WaitGroup
	authFails authFailLog // rate limit of the failed-AUTH log line (authfail.go)
	track     *tracker    // client-side caching (tracking.go)
}

// NewServer returns a proxy for cfg. reg receives the proxy's metrics (nil: none).
func NewServer(cfg *Config, log *slog.Logger, reg prometheus.Registerer) *Server {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "proxy")
	ctx, cancel := context.WithCancel(context.Background())
	m := NewMetrics(reg)
	s := &Server{
		log:      log,
		metrics:  m,
		ctx:      ctx,
		cancel:   cancel,
		started:  time.Now(),
		sessions: map[*session]struct{}{},
	}
	c := *cfg
	s.cfgp.Store(&c)
	s.setDeny(c.DenyCommands)
	s.cl = newCluster(ctx, &s.cfgp, log, m)
	ft := buildFastTable(s.cl.cmds.Load())
	s.fast.Store(&ft)
	s.startLoops()
	s.cl.onAbandon = func(n *node) {
		for _, l := range s.loops {
			l.post(func() {
				if b := l.backends[n]; b != nil {
					b.abandon()
				}
				for _, b := range l.parked {
					if b.n == n {
						b.abandon()
					}
				}
				l.abandonPriv(n) // private.go
			})
		}
	}
	if reg != nil {
		reg.MustRegister(pendingCollector{s.cl}, statsCollector{s})
	}
	s.hot = newHotkeys(cfg.HotkeysSampleRate, cfg.HotkeysWindow)
	s.privSlots = make(chan struct{}, cfg.BlockingConnections)
	s.track = newTracker(s)
	return s
}

// Start begins keeping the slot map current and waits until the first complete map is
// loaded or ctx ends. The server keeps refreshing in the background either way.
func (s *Server) Start(ctx context.Context) error {
	if s.cl.tlsErr != nil {
		return s.cl.tlsErr
	}
	if s.loopErr != nil {
		return s.loopErr
	}
	s.cl.wg.Add(1)
	go func() {
		defer s.cl.wg.Done()
		s.cl.refresher(s.ctx)
	}()
	if err := s.cl.waitForMap(ctx); err != nil {
		go s.loadCommandTableLater()
		return fmt.Errorf("proxy: initial slot map: %w", err)
	}
	if !s.loadCommandTable(ctx) {
		go s.loadCommandTableLater()
	}
	return nil
}

// Config returns the configuration in force; callers must not modify it.
func (s *Server) Config() *Config { return s.conf() }

// conf returns the configuration in force (replaced as a whole by Reload).
func (s *Server) conf() *Config { return s.cfgp.Load() }

// Serve accepts clients on ln until ln is closed; a closed listener is a clean stop and
// returns nil. Connections already accepted keep running. The clients belong to the
// endpoint of the configured vip (else listen's host); see Endpoint for several VIPs.
func (s *Server) Serve(ln net.Listener) error { return s.serve(s.defaultEndpoint(ln), ln) }

func (s *Server) serve(ep *Endpoint, ln net.Listener) error {
	var tempDelay time.Duration
	accept := ln.Accept
	if tl, ok := ln.(TLSListener); ok {
		accept = func() (net.Conn, error) { return acceptTLS(tl) } // tlsloop.go
	}
	for {
		conn, err := accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				ep.log.Warn("accept failed; retrying", "err", err, "delay", tempDelay)
				time.Sleep(tempDelay)
				continue
			}
			return fmt.Errorf("proxy: accept on %s: %w", ln.Addr(), err)
		}
		tempDelay = 0
		s.acceptLoop(ep, conn)
	}
}

// admit counts a new client, or refuses it with Redis's error over maxclients.
func (s *Server) admit(ep *Endpoint, conn net.Conn) bool {
	if n := s.clients.Add(1); n > int64(s.conf().MaxClients) {
		s.clients.Add(-1)
		s.metrics.clientsRejected.WithLabelValues(ep.vip, "maxclients").Inc()
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		conn.Write([]byte("-ERR max number of clients reached\r\n"))
		conn.Close()
		return false
	}
	return true
}

// Clients returns the number of open client connections.
func (s *Server) Clients() int { return int(s.clients.Load()) }

// CloseClients stops reading new commands from every client, lets in-flight commands be
// answered for up to grace, then closes the connections. It returns when all are closed.
func (s *Server) CloseClients(grace time.Duration) {
	s.mu.Lock()
	list := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		list = append(list, ss)
	}
	s.mu.Unlock()
	closeSessions(list, grace)
}

// Close closes every client (with the shutdown grace period) and every backend connection.
func (s *Server) Close() {
	s.CloseClients(s.conf().ShutdownTimeout)
	s.wg.Wait()
	s.cancel()
	for _, l := range s.loops {
		l.stop()
	}
	s.cl.wg.Wait()
}

package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// node is one cluster node and its shared, pipelined connections.
type node struct {
	addr  string
	c     *cluster
	conns []*backendConn
	down  atomic.Bool // last dial failed
	// suspect is set on the first sign of trouble and cleared when the node answers again
	// (health.go).
	suspect atomic.Bool

	// loopPending counts the commands queued for or awaiting a reply on the event loops'
	// connections to the node.
	loopPending atomic.Int64
}

// pending returns the commands queued for or awaiting a reply on n's connections.
func (n *node) pending() int {
	p := int(n.loopPending.Load())
	for _, bc := range n.conns {
		p += len(bc.queue) + int(bc.pending.Load())
	}
	return p
}

// cluster holds everything the proxy knows about the Redis Cluster: nodes, their
// connections, the slot map and the command table.
type cluster struct {
	cfgp    *atomic.Pointer[Config]
	log     *slog.Logger
	metrics *Metrics
	ctx     context.Context

	nodesMu sync.Mutex
	nodes   map[string]*node

	smap      atomic.Pointer[slotMap]
	covered   atomic.Int32 // slots served according to the last refresh
	refreshCh chan refreshReason
	tls       *tls.Config // nil: plain TCP to the nodes
	tlsErr    error
	cmds      atomic.Pointer[cmdTable] // replaced once, when a node first answers COMMAND
	wg        sync.WaitGroup

	suspects    atomic.Int32 // nodes with suspect set
	failFlagged atomic.Bool  // the last CLUSTER NODES flagged a node serving slots fail? or fail
	fetching    atomic.Pointer[fetchingNode]
	// onAbandon abandons the event loops' connections to a node (set by the server).
	onAbandon func(n *node)
	// ownerChanges is signalled when a slot changes owner (subscriptions follow).
	ownerChanges signal
}

func newCluster(ctx context.Context, cfgp *atomic.Pointer[Config], log *slog.Logger, m *Metrics) *cluster {
	c := &cluster{
		cfgp:      cfgp,
		log:       log,
		metrics:   m,
		ctx:       ctx,
		nodes:     map[string]*node{},
		refreshCh: make(chan refreshReason, 1),
	}
	c.cmds.Store(newBuiltinTable())
	c.tls, c.tlsErr = backendTLSConfig(cfgp.Load())
	return c
}

// dialNode connects to a cluster node, with TLS when tls-cluster is on.
func (c *cluster) dialNode(ctx context.Context, addr string) (net.Conn, error) {
	if c.tlsErr != nil {
		return nil, c.tlsErr
	}
	cfg := c.conf()
	d := net.Dialer{Timeout: cfg.BackendConnectTimeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil || c.tls == nil {
		return conn, err
	}
	tc := c.tls.Clone()
	if host, _, err := net.SplitHostPort(addr); err == nil && tc.ServerName == "" {
		tc.ServerName = host
	}
	tconn := tls.Client(conn, tc)
	hctx, cancel := context.WithTimeout(ctx, cfg.BackendConnectTimeout)
	defer cancel()
	if err := tconn.HandshakeContext(hctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tconn, nil
}

func (c *cluster) conf() *Config { return c.cfgp.Load() }

func (c *cluster) lookupNode(addr string) *node {
	c.nodesMu.Lock()
	defer c.nodesMu.Unlock()
	return c.nodes[addr]
}

// node returns the node for addr, creating it and starting its connections on first use.
func (c *cluster) node(addr string) *node {
	c.nodesMu.Lock()
	defer c.nodesMu.Unlock()
	if n, ok := c.nodes[addr]; ok {
		return n
	}
	n := &node{addr: addr, c: c}
	for i := 0; i < c.conf().BackendConnections; i++ {
		bc := &backendConn{n: n, queue: make(chan *request, c.conf().BackendQueueDepth), kick: make(chan struct{}, 1)}
		n.conns = append(n.conns, bc)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			bc.run(c.ctx)
		}()
	}
	c.nodes[addr] = n
	c.metrics.nodesKnown.Set(float64(len(c.nodes)))
	return n
}

// send queues r on the connection of n chosen by sticky (a client's id), so that one
// client's commands to one node keep their order. It never blocks forever: if the queue is
// full it waits until ctx ends.
func (n *node) send(ctx context.Context, r *request, sticky uint64) {
	r.node = n
	bc := n.conns[sticky%uint64(len(n.conns))]
	select {
	case bc.queue <- r:
	case <-ctx.Done():
		r.complete(nil, errShuttingDown)
	}
}

// backendConn is one pipelined connection to a node. A single writer goroutine coalesces
// queued commands into few writes; a reader goroutine frames replies and hands each to the
// oldest in-flight request.
type backendConn struct {
	n     *node
	queue chan *request

	mu       sync.Mutex
	inflight []*request
	closed   bool

	conn      net.Conn    // the connection being served (nil between connections)
	abandoned atomic.Bool // conn was closed by abandon: in-flight commands fail with errFailedOver

	pending      atomic.Int64  // len(inflight), for the watchdog and metrics
	kick         chan struct{} // wakes the watchdog when pending leaves 0
	lastProgress atomic.Int64  // unix nanos of the last reply, or of the first send after idle
	timedOut     atomic.Bool
}

// run dials and serves the connection until ctx ends, reconnecting with backoff. While the
// node cannot be reached, queued commands fail at once with ErrNotSent (they were never
// written, so the client side may re-route them).
func (bc *backendConn) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	log := bc.n.c.log.With("node", bc.n.addr)
	for ctx.Err() == nil {
		conn, err := bc.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if !bc.n.down.Swap(true) {
				log.Warn("cluster node unreachable", "err", err)
				bc.n.c.requestRefresh(refreshConnLoss)
			}
			bc.n.c.markSuspect(bc.n, "connect")
			bc.n.c.metrics.backendErrors.WithLabelValues(bc.n.addr, "connect").Inc()
			bc.failQueued(ctx, backoff, fmt.Errorf("%w: %s unreachable: %v", ErrNotSent, bc.n.addr, err))
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		if bc.n.down.Swap(false) {
			log.Info("cluster node reachable again")
		}
		bc.n.c.nodeAnswered(bc.n)
		backoff = 50 * time.Millisecond
		bc.serve(ctx, conn)
		if ctx.Err() == nil {
			bc.n.c.requestRefresh(refreshConnLoss)
		}
	}
	// Shutting down: nothing more will be written.
	for {
		select {
		case r := <-bc.queue:
			r.complete(nil, errShuttingDown)
		default:
			return
		}
	}
}

// failQueued fails every command queued during d.
func (bc *backendConn) failQueued(ctx context.Context, d time.Duration, err error) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case r := <-bc.queue:
			r.complete(nil, err)
		}
	}
}

func (bc *backendConn) dial(ctx context.Context) (net.Conn, error) {
	return bc.n.c.dialReady(ctx, bc.n.addr)
}

// dialReady connects to a node and prepares the connection for shared use: AUTH with the
// backend credentials, READONLY when reads may go to replicas, and a PING otherwise, so
// that a connection counts only once the node answers.
func (c *cluster) dialReady(ctx context.Context, addr string) (net.Conn, error) {
	cfg := c.conf()
	conn, err := c.dialNode(ctx, addr)
	if err != nil {
		return nil, err
	}
	if cfg.BackendPassword != "" {
		var cmd []byte
		if cfg.BackendUser != "" {
			cmd = appendCommand(nil, []byte("AUTH"), []byte(cfg.BackendUser), []byte(cfg.BackendPassword))
		} else {
			cmd = appendCommand(nil, []byte("AUTH"), []byte(cfg.BackendPassword))
		}
		conn.SetDeadline(time.Now().Add(cfg.BackendReadTimeout))
		reply, err := roundTrip(conn, cmd)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("auth: %w", err)
		}
		if reply[0] == '-' {
			conn.Close()
			return nil, fmt.Errorf("auth: %s", reply[1:len(reply)-2])
		}
		conn.SetDeadline(time.Time{})
	}
	if cfg.ReadFrom != "master" {
		// Lets replicas serve reads; harmless on masters.
		conn.SetDeadline(time.Now().Add(cfg.BackendReadTimeout))
		if _, err := roundTrip(conn, []byte("*1\r\n$8\r\nREADONLY\r\n")); err != nil {
			conn.Close()
			return nil, fmt.Errorf("readonly: %w", err)
		}
		conn.SetDeadline(time.Time{})
	}
	if cfg.BackendPassword == "" && cfg.ReadFrom == "master" {
		// The node counts as reachable only once it answers: a connection accepted by a
		// process that is being killed would otherwise count as a recovery.
		conn.SetDeadline(time.Now().Add(cfg.BackendReadTimeout))
		reply, err := roundTrip(conn, []byte("*1\r\n$4\r\nPING\r\n"))
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("ping: %w", err)
		}
		if reply[0] == '-' {
			conn.Close()
			return nil, fmt.Errorf("ping: %s", reply[1:len(reply)-2])
		}
		conn.SetDeadline(time.Time{})
	}
	return conn, nil
}

// roundTrip sends one command on an otherwise idle connection and reads its reply.
func roundTrip(conn net.Conn, cmd []byte) ([]byte, error) {
	if _, err := conn.Write(cmd); err != nil {
		return nil, err
	}
	return newReplyReader(bufio.NewReaderSize(conn, 512)).next()
}

// push records r as in flight, in write order. It reports false once the connection is
// broken (r was then not written).
func (bc *backendConn) push(r *request) bool {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if bc.closed {
		return false
	}
	if r.asking {
		bc.inflight = append(bc.inflight, discard)
	}
	bc.inflight = append(bc.inflight, r)
	r.sent = time.Now()
	if bc.pending.Add(1) == 1 {
		bc.lastProgress.Store(r.sent.UnixNano())
		select {
		case bc.kick <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
	return true
}

func (bc *backendConn) pop() *request {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if len(bc.inflight) == 0 {
		return nil
	}
	r := bc.inflight[0]
	bc.inflight[0] = nil
	bc.inflight = bc.inflight[1:]
	if r != discard {
		bc.pending.Add(-1)
	}
	return r
}

// serve runs one established connection until it breaks or ctx ends.
func (bc *backendConn) serve(ctx context.Context, conn net.Conn) {
	bc.mu.Lock()
	bc.closed = false
	bc.inflight = bc.inflight[:0]
	bc.conn = conn
	bc.abandoned.Store(false)
	bc.mu.Unlock()
	bc.timedOut.Store(false)
	c := bc.n.c
	c.metrics.backendConns.WithLabelValues(bc.n.addr).Inc()
	defer c.metrics.backendConns.WithLabelValues(bc.n.addr).Dec()

	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		bc.readLoop(conn)
	}()
	stopWatch := make(chan struct{})
	go bc.watchdog(conn, stopWatch)
	defer close(stopWatch)

	bw := bufio.NewWriterSize(conn, 32<<10)
	for {
		var r *request
		yielded := false
		select {
		case <-readerDone:
			return
		case <-ctx.Done():
			conn.Close()
			<-readerDone
			return
		case r = <-bc.queue:
		}
		for r != nil {
			if !bc.push(r) {
				r.complete(nil, fmt.Errorf("%w: connection to %s lost", ErrNotSent, bc.n.addr))
			} else {
				if r.asking {
					bw.WriteString("*1\r\n$6\r\nASKING\r\n")
				}
				bw.Write(r.raw)
			}
			r = nil
			// Coalesce whatever else is queued into the same write. When the queue is
			// empty, yield once: clients woken by the same burst of replies usually
			// queue their next command within microseconds, and one write for several
			// commands saves a syscall per command.
			if bw.Buffered() < 16<<10 {
				select {
				case r = <-bc.queue:
				default:
					if !yielded {
						yielded = true
						runtime.Gosched()
						select {
						case r = <-bc.queue:
						default:
						}
					}
				}
			}
		}
		yielded = false
		if err := bw.Flush(); err != nil {
			conn.Close()
			<-readerDone
			return
		}
	}
}

// readLoop frames replies until the connection breaks, then fails every in-flight request.
func (bc *backendConn) readLoop(conn net.Conn) {
	c := bc.n.c
	rr := newReplyReader(bufio.NewReaderSize(conn, 32<<10))
	var err error
	for {
		var reply []byte
		reply, err = rr.next()
		if err != nil {
			break
		}
		r := bc.pop()
		if r == nil {
			err = errors.New("reply without a request")
			break
		}
		now := time.Now()
		bc.lastProgress.Store(now.UnixNano())
		if bc.n.suspect.Load() {
			c.nodeAnswered(bc.n)
		}
		if r != discard {
			c.metrics.shared.backendRTT(bc.n.addr, now.Sub(r.sent))
			r.complete(reply, nil)
		}
	}
	conn.Close()
	bc.mu.Lock()
	bc.closed = true
	bc.conn = nil
	lost := bc.inflight
	bc.inflight = nil
	bc.mu.Unlock()
	bc.pending.Store(0)
	fail := errFateUnknown
	reason := "connection_lost"
	switch {
	case bc.abandoned.Load():
		fail = errFailedOver
		reason = "failed_over"
	case bc.timedOut.Load():
		fail = errBackendTimeout
		reason = "timeout"
	}
	if reason != "failed_over" && c.ctx.Err() == nil && (len(lost) > 0 || reason == "timeout") {
		c.markSuspect(bc.n, reason)
	}
	n := 0
	for _, r := range lost {
		if r != discard {
			r.complete(nil, fail)
			n++
		}
	}
	c.metrics.backendErrors.WithLabelValues(bc.n.addr, reason).Inc()
	if n > 0 || bc.timedOut.Load() {
		c.log.Warn("backend connection failed", "node", bc.n.addr, "reason", reason, "in_flight_failed", n, "err", err)
	} else {
		c.log.Debug("backend connection closed", "node", bc.n.addr, "err", err)
	}
}

// watchdog closes the connection when requests are pending and no reply has arrived for
// backend-read-timeout: a stalled node must give errors, not hangs.
//
// It also marks the node suspect once requests wait longer than backend-suspect-after.
// While nothing is pending it sleeps until push kicks it, so idle connections cost no
// wake-ups.
func (bc *backendConn) watchdog(conn net.Conn, stop <-chan struct{}) {
	c := bc.n.c
	tickFor := func(cfg *Config) time.Duration {
		return max(min(cfg.BackendReadTimeout/10, cfg.BackendSuspectAfter/4), 5*time.Millisecond)
	}
	cfg := c.conf()
	tick := tickFor(cfg)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if cfg = c.conf(); tickFor(cfg) != tick { // reloaded
				tick = tickFor(cfg)
				t.Reset(tick)
			}
			if bc.pending.Load() == 0 {
				t.Stop()
				select {
				case <-stop:
					return
				case <-bc.kick:
				}
				t.Reset(tick)
				continue
			}
			waited := time.Since(time.Unix(0, bc.lastProgress.Load()))
			if waited > cfg.BackendReadTimeout {
				bc.timedOut.Store(true)
				conn.Close()
				return
			}
			if waited > cfg.BackendSuspectAfter && !bc.n.suspect.Load() {
				c.markSuspect(bc.n, "slow")
			}
		}
	}
}

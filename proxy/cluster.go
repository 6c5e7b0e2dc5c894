package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// node is one cluster node and its shared, pipelined connections.
type node struct {
	addr string
	c    *cluster
	down atomic.Bool // last dial failed
	// suspect is set on the first sign of trouble and cleared when the node answers again
	// (health.go).
	suspect atomic.Bool
	// executing is when (UnixNano) the node last answered -BUSY or -LOADING (to a probe,
	// a hand-shake or a command), scriptAt and loadingAt when it last answered -BUSY and
	// -LOADING; probeAt is when
	// the last probe started, probing is set while one runs (busy.go).
	executing atomic.Int64
	scriptAt  atomic.Int64
	loadingAt atomic.Int64
	probeAt   atomic.Int64
	probing   atomic.Bool

	// loopPending counts the commands queued for or awaiting a reply on the event loops'
	// connections to the node.
	loopPending atomic.Int64
}

// pending returns the commands queued for or awaiting a reply on n's connections.
func (n *node) pending() int {
	return int(n.loopPending.Load())
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
	cmds      atomic.Pointer[command.Table] // replaced once, when a node first answers COMMAND
	wg        sync.WaitGroup

	suspects    atomic.Int32 // nodes with suspect set
	failFlagged atomic.Bool  // the last CLUSTER NODES flagged a node serving slots fail? or fail
	fetching    atomic.Pointer[fetchingNode]
	// pausedUntil is when (UnixNano) the last CLIENT PAUSE the proxy fanned out ends (busy.go).
	pausedUntil atomic.Int64
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
	c.cmds.Store(command.Builtin())
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
	c.nodes[addr] = n
	c.metrics.nodesKnown.Set(float64(len(c.nodes)))
	return n
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
			cmd = resp.AppendCommand(nil, []byte("AUTH"), []byte(cfg.BackendUser), []byte(cfg.BackendPassword))
		} else {
			cmd = resp.AppendCommand(nil, []byte("AUTH"), []byte(cfg.BackendPassword))
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
		if reason, ok := executingReply(reply); ok {
			// Executing (a script, loading), not gone: the connection is taken, and the
			// commands sent on it get the node's own -BUSY or -LOADING (busy.go).
			c.sawExecuting(c.lookupNode(addr), reason)
		} else if reply[0] == '-' {
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
	return resp.NewReader(conn).Next()
}

// Package testcluster starts real Redis Cluster processes on loopback for the tests, the demo
// and the benchmark: N redis-server processes in a temporary directory, joined with
// `redis-cli --cluster create`, and helpers to kill, restart, pause and fail over nodes and
// to move slots with the real MIGRATING/IMPORTING + MIGRATE sequence.
//
// Every process is killed by Close, and also when the process that started it dies (parent
// death signal), so an interrupted test leaves nothing running.
package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configures a cluster. The zero value starts 3 masters with 1 replica each.
type Options struct {
	Masters     int           // default 3
	Replicas    int           // replicas per master; default 1 (negative: none)
	NodeTimeout time.Duration // cluster-node-timeout; default 5s
	// ExtraConfig lines are appended to every node's redis.conf.
	ExtraConfig []string
	// Logf, if set, receives progress lines.
	Logf func(format string, args ...any)
	// RedisServer and RedisCLI name the binaries; default from $PATH.
	RedisServer, RedisCLI string
	// TLS, when set, starts the nodes with TLS only (tls-port, port 0, tls-cluster and
	// tls-replication yes) using these files; see WriteTLSFiles. Node.Addr is then the TLS
	// port and Client connects with TLS.
	TLS *TLSFiles
}

// Node is one redis-server process.
type Node struct {
	Addr string // 127.0.0.1:port
	Port int
	Dir  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Cluster is a running Redis Cluster. Its methods are safe for concurrent use.
type Cluster struct {
	Nodes []*Node

	opts Options
	dir  string

	mu      sync.Mutex
	clients map[string]*redis.Client
	closed  bool
}

// ErrNoRedis is returned by Start when redis-server or redis-cli is not installed.
var ErrNoRedis = errors.New("testcluster: redis-server/redis-cli not found (run `make deps`)")

// New starts a cluster for a test and stops it when the test ends; it fails the test if the
// cluster cannot start.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Start starts the processes, creates the cluster and waits until every node reports
// cluster_state:ok, agrees on the slot map and every replica is in sync.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Masters == 0 {
		opts.Masters = 3
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	} else if opts.Replicas < 0 {
		opts.Replicas = 0
	}
	c, err := newCluster(opts, "testcluster-", true)
	if err != nil {
		return nil, err
	}
	opts = c.opts
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()

	total := opts.Masters * (1 + opts.Replicas)
	ports, err := freePorts(total)
	if err != nil {
		return nil, err
	}
	for _, p := range ports {
		n := &Node{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), Port: p, Dir: filepath.Join(c.dir, strconv.Itoa(p))}
		if err := os.MkdirAll(n.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("testcluster: %w", err)
		}
		if err := c.writeConfig(n); err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		if err := c.startNodeRetry(ctx, n); err != nil {
			return nil, err
		}
	}
	opts.Logf("started %d redis-server processes in %s", total, c.dir)

	args := []string{"--cluster", "create"}
	args = append(args, c.Seeds()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(opts.Replicas), "--cluster-yes")
	if opts.TLS != nil {
		args = append(args, "--tls", "--cert", opts.TLS.CertFile, "--key", opts.TLS.KeyFile, "--cacert", opts.TLS.CACertFile)
	}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	out, err := exec.CommandContext(cctx, opts.RedisCLI, args...).CombinedOutput()
	cancel()
	if err != nil {
		return nil, fmt.Errorf("testcluster: redis-cli --cluster create: %w\n%s", err, out)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		return nil, err
	}
	opts.Logf("cluster ok: %d masters, %d replicas each", opts.Masters, opts.Replicas)
	ok = true
	return c, nil
}

// newCluster fills in the defaults of opts, checks that redis-server (and redis-cli when
// needCLI) is installed and makes the cluster's temporary directory.
func newCluster(opts Options, dirPrefix string, needCLI bool) (*Cluster, error) {
	if opts.NodeTimeout == 0 {
		opts.NodeTimeout = 5 * time.Second
	}
	if opts.RedisServer == "" {
		opts.RedisServer = "redis-server"
	}
	if opts.RedisCLI == "" {
		opts.RedisCLI = "redis-cli"
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.TLS != nil {
		if _, err := opts.TLS.Config(); err != nil {
			return nil, err
		}
	}
	bins := []string{opts.RedisServer}
	if needCLI {
		bins = append(bins, opts.RedisCLI)
	}
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNoRedis, err)
		}
	}
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("testcluster: %w", err)
	}
	return &Cluster{opts: opts, dir: dir, clients: map[string]*redis.Client{}}, nil
}

// freePorts picks n loopback ports p whose cluster bus port p+10000 is free too.
func freePorts(n int) ([]int, error) {
	var ports []int
	for tries := 0; len(ports) < n && tries < 1000; tries++ {
		p := 20000 + rand.IntN(30000)
		if slices.Contains(ports, p) || slices.Contains(ports, p+10000) || slices.Contains(ports, p-10000) {
			continue
		}
		if portFree(p) && portFree(p+10000) {
			ports = append(ports, p)
		}
	}
	if len(ports) < n {
		return nil, errors.New("testcluster: no free loopback ports")
	}
	slices.Sort(ports)
	return ports, nil
}

func portFree(p int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func (c *Cluster) writeConfig(n *Node) error {
	port := "port " + strconv.Itoa(n.Port)
	if t := c.opts.TLS; t != nil {
		port = "port 0\ntls-port " + strconv.Itoa(n.Port) + "\ntls-cluster yes\ntls-replication yes\n" +
			"tls-cert-file " + t.CertFile + "\ntls-key-file " + t.KeyFile + "\ntls-ca-cert-file " + t.CACertFile
	}
	lines := []string{
		port,
		"bind 127.0.0.1",
		"protected-mode no",
		"daemonize no",
		"dir " + n.Dir,
		"logfile " + filepath.Join(n.Dir, "redis.log"),
		"cluster-enabled yes",
		"cluster-config-file nodes.conf",
		"cluster-node-timeout " + strconv.FormatInt(c.opts.NodeTimeout.Milliseconds(), 10),
		"appendonly no",
		`save ""`,
	}
	lines = append(lines, c.opts.ExtraConfig...)
	return os.WriteFile(filepath.Join(n.Dir, "redis.conf"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// errPortTaken means redis-server could not bind its port or bus port: another process
// (a parallel test's cluster) took it between freePorts' check and the bind.
var errPortTaken = errors.New("port taken")

// startNodeRetry starts a new node, moving it to other free ports when another process
// took its port or bus port first (up to five times).
func (c *Cluster) startNodeRetry(ctx context.Context, n *Node) error {
	for attempt := 0; ; attempt++ {
		err := c.startNode(ctx, n)
		if err == nil || attempt == 4 || !errors.Is(err, errPortTaken) {
			return err
		}
		ports, perr := freePorts(1)
		if perr != nil {
			return perr
		}
		c.opts.Logf("%s: %v; moving to port %d", n.Addr, err, ports[0])
		n.Port, n.Addr = ports[0], net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		if err := c.writeConfig(n); err != nil {
			return err
		}
	}
}

func (c *Cluster) startNode(ctx context.Context, n *Node) error {
	cmd := exec.Command(c.opts.RedisServer, filepath.Join(n.Dir, "redis.conf"))
	cmd.Dir = n.Dir
	cmd.SysProcAttr = ChildProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testcluster: start %s: %w", n.Addr, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	n.mu.Lock()
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()

	cl := c.Client(n)
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := cl.Ping(pctx).Err()
		cancel()
		// A node with requirepass (redis init's cluster password) answers NOAUTH: it is up.
		if err == nil || strings.HasPrefix(err.Error(), "NOAUTH") {
			return nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(n.Dir, "redis.log"))
			if bytes.Contains(log, []byte("Address already in use")) {
				return fmt.Errorf("testcluster: redis-server %s: %w:\n%s", n.Addr, errPortTaken, tail(log, 2000))
			}
			return fmt.Errorf("testcluster: redis-server %s exited at start:\n%s", n.Addr, tail(log, 2000))
		case <-ctx.Done():
			return fmt.Errorf("testcluster: start %s: %w", n.Addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testcluster: %s not answering PING: %w", n.Addr, err)
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Seeds returns the addresses of every node.
func (c *Cluster) Seeds() []string {
	s := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		s[i] = n.Addr
	}
	return s
}

// Client returns a control client of one node (cached; closed by Close).
func (c *Cluster) Client(n *Node) *redis.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.clients[n.Addr]; ok {
		return cl
	}
	o := &redis.Options{
		Addr: n.Addr, DialTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second,
		MaxRetries: -1, PoolSize: 4, DisableIdentity: true,
	}
	if c.opts.TLS != nil {
		o.TLSConfig, _ = c.opts.TLS.Config() // the files were usable when the cluster started
	}
	cl := redis.NewClient(o)
	c.clients[n.Addr] = cl
	return cl
}

// Alive reports whether the node's process is running.
func (n *Node) Alive() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.exited == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

func (c *Cluster) nodeByAddr(addr string) *Node {
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, addr, masterID string
	flags              []string
	slots              [][2]int
}

func (cn clusterNode) has(flag string) bool { return slices.Contains(cn.flags, flag) }

func parseClusterNodes(s string) []clusterNode {
	var out []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		cn := clusterNode{id: f[0], addr: addr, flags: strings.Split(f[2], ","), masterID: f[3]}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // migrating/importing marker
			}
			lo, hi, found := strings.Cut(r, "-")
			a, _ := strconv.Atoi(lo)
			b := a
			if found {
				b, _ = strconv.Atoi(hi)
			}
			cn.slots = append(cn.slots, [2]int{a, b})
		}
		out = append(out, cn)
	}
	return out
}

// view returns CLUSTER NODES as seen by the first live node that answers.
func (c *Cluster) view(ctx context.Context) ([]clusterNode, error) {
	var last error = errors.New("no live node")
	for _, n := range c.Nodes {
		if !n.Alive() {
			continue
		}
		s, err := c.Client(n).ClusterNodes(ctx).Result()
		if err != nil {
			last = err
			continue
		}
		return parseClusterNodes(s), nil
	}
	return nil, fmt.Errorf("testcluster: CLUSTER NODES: %w", last)
}

func (c *Cluster) byRole(ctx context.Context, role string) ([]*Node, error) {
	v, err := c.view(ctx)
	if err != nil {
		return nil, err
	}
	var out []*Node
	for _, cn := range v {
		if cn.has(role) && !cn.has("fail") && !cn.has("fail?") {
			if n := c.nodeByAddr(cn.addr); n != nil && n.Alive() {
				out = append(out, n)
			}
		}
	}
	slices.SortFunc(out, func(a, b *Node) int { return a.Port - b.Port })
	return out, nil
}

// Masters returns the live masters, ordered by port.
func (c *Cluster) Masters(ctx context.Context) ([]*Node, error) { return c.byRole(ctx, "master") }

// Replicas returns the live replicas, ordered by port.
func (c *Cluster) Replicas(ctx context.Context) ([]*Node, error) { return c.byRole(ctx, "slave") }

// OwnerOf returns the master serving slot: the live master that itself claims the slot
// (other nodes learn of a slot move through gossip, a little later).
func (c *Cluster) OwnerOf(ctx context.Context, slot int) (*Node, error) {
	for _, n := range c.Nodes {
		if !n.Alive() {
			continue
		}
		s, err := c.Client(n).ClusterNodes(ctx).Result()
		if err != nil {
			continue
		}
		for _, cn := range parseClusterNodes(s) {
			if !cn.has("myself") || !cn.has("master") {
				continue
			}
			for _, r := range cn.slots {
				if slot >= r[0] && slot <= r[1] {
					return n, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("testcluster: no live master claims slot %d:\n%s", slot, c.dump(ctx))
}

// OwnerAndOther returns the master serving slot and another master, for tests that move
// the slot.
func (c *Cluster) OwnerAndOther(ctx context.Context, slot int) (owner, other *Node, err error) {
	owner, err = c.OwnerOf(ctx, slot)
	if err != nil {
		return nil, nil, err
	}
	masters, err := c.Masters(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range masters {
		if m.Addr != owner.Addr {
			return owner, m, nil
		}
	}
	return nil, nil, fmt.Errorf("testcluster: no master besides %s", owner.Addr)
}

// dump returns every live node's CLUSTER NODES, for error messages.
func (c *Cluster) dump(ctx context.Context) string {
	var b strings.Builder
	for _, n := range c.Nodes {
		if n.Alive() {
			s, err := c.Client(n).ClusterNodes(ctx).Result()
			fmt.Fprintf(&b, "--- %s (%v)\n%s", n.Addr, err, s)
		}
	}
	return b.String()
}

// NodeID returns the node's cluster ID (CLUSTER MYID).
func (c *Cluster) NodeID(ctx context.Context, n *Node) (string, error) {
	id, err := c.Client(n).Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		return "", fmt.Errorf("testcluster: CLUSTER MYID on %s: %w", n.Addr, err)
	}
	return id, nil
}

// MoveSlots moves each slot to the master to, with the sequence redis-cli --cluster reshard
// uses: SETSLOT IMPORTING on the target, SETSLOT MIGRATING on the source, MIGRATE of every
// key in batches, then SETSLOT NODE on the target, the source and every other master.
// Traffic may run meanwhile: clients get ASK for keys already moved.
func (c *Cluster) MoveSlots(ctx context.Context, slots []int, to *Node) error {
	return c.moveSlots(ctx, slots, to, 0)
}

// MoveSlotsSkewed moves each slot like MoveSlots but finalizes it in the order that
// makes the nodes disagree: SETSLOT NODE on the source first, then, gap later, on the
// target. During gap the source answers MOVED to the target and the target, still
// importing, MOVED back to the source (a redirection loop, as while a new owner's epoch
// spreads).
func (c *Cluster) MoveSlotsSkewed(ctx context.Context, slots []int, to *Node, gap time.Duration) error {
	return c.moveSlots(ctx, slots, to, gap)
}

func (c *Cluster) moveSlots(ctx context.Context, slots []int, to *Node, gap time.Duration) error {
	toID, err := c.NodeID(ctx, to)
	if err != nil {
		return err
	}
	for _, slot := range slots {
		from, err := c.OwnerOf(ctx, slot)
		if err != nil {
			return err
		}
		if from == nil {
			return fmt.Errorf("testcluster: slot %d owner is not one of ours", slot)
		}
		if from == to {
			continue
		}
		fromID, err := c.NodeID(ctx, from)
		if err != nil {
			return err
		}
		src, dst := c.Client(from), c.Client(to)
		if err := dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID).Err(); err != nil {
			return fmt.Errorf("testcluster: SETSLOT %d IMPORTING on %s: %w", slot, to.Addr, err)
		}
		if err := src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID).Err(); err != nil {
			return fmt.Errorf("testcluster: SETSLOT %d MIGRATING on %s: %w", slot, from.Addr, err)
		}
		for {
			keys, err := src.ClusterGetKeysInSlot(ctx, slot, 100).Result()
			if err != nil {
				return fmt.Errorf("testcluster: GETKEYSINSLOT %d on %s: %w", slot, from.Addr, err)
			}
			if len(keys) == 0 {
				break
			}
			args := []any{"MIGRATE", "127.0.0.1", to.Port, "", 0, 5000, "KEYS"}
			for _, k := range keys {
				args = append(args, k)
			}
			if err := src.Do(ctx, args...).Err(); err != nil && !errors.Is(err, redis.Nil) && err.Error() != "NOKEY" {
				return fmt.Errorf("testcluster: MIGRATE slot %d %s -> %s: %w", slot, from.Addr, to.Addr, err)
			}
		}
		// Target first, so the source's redirection never points at a node that refuses
		// (skewed: source first, the target gap later).
		first, second := dst, src
		firstN, secondN := to, from
		if gap > 0 {
			first, second, firstN, secondN = src, dst, from, to
		}
		if err := first.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", toID).Err(); err != nil {
			return fmt.Errorf("testcluster: SETSLOT %d NODE on %s: %w", slot, firstN.Addr, err)
		}
		if err := sleep(ctx, gap); err != nil {
			return err
		}
		if err := second.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", toID).Err(); err != nil {
			return fmt.Errorf("testcluster: SETSLOT %d NODE on %s: %w", slot, secondN.Addr, err)
		}
		masters, err := c.Masters(ctx)
		if err != nil {
			return err
		}
		for _, m := range masters {
			if m == from || m == to {
				continue
			}
			// Other masters learn it through gossip too; an error here is not fatal.
			c.Client(m).Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", toID)
		}
		// Let every node agree before the next move: moving a slot again while the
		// previous move is still being gossiped can leave it owned by nobody.
		if err := c.waitOwner(ctx, slot, to.Addr); err != nil {
			return err
		}
	}
	return nil
}

// waitOwner waits until every live node says addr serves slot and all know the same
// current epoch.
func (c *Cluster) waitOwner(ctx context.Context, slot int, addr string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		agree := true
		epochs := map[string]bool{}
		for _, n := range c.Nodes {
			if !n.Alive() {
				continue
			}
			info, err := c.Client(n).ClusterInfo(ctx).Result()
			if err != nil {
				agree = false
				break
			}
			for _, l := range strings.Split(info, "\r\n") {
				if v, ok := strings.CutPrefix(l, "cluster_current_epoch:"); ok {
					epochs[v] = true
				}
			}
			s, err := c.Client(n).ClusterNodes(ctx).Result()
			if err != nil {
				agree = false
				break
			}
			owner := ""
			for _, cn := range parseClusterNodes(s) {
				for _, r := range cn.slots {
					if cn.has("master") && slot >= r[0] && slot <= r[1] {
						owner = cn.addr
					}
				}
			}
			if owner != addr {
				agree = false
				break
			}
		}
		// The current epoch must have reached every node too: the next move's epoch bump
		// must beat every claim still in flight.
		if agree && len(epochs) == 1 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testcluster: nodes do not agree that %s serves slot %d after 15s:\n%s", addr, slot, c.dump(ctx))
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// Failover runs CLUSTER FAILOVER (coordinated, no data loss) on a replica and waits until
// it is a master and the cluster is healthy again.
func (c *Cluster) Failover(ctx context.Context, replica *Node) error {
	if err := c.Client(replica).Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		return fmt.Errorf("testcluster: CLUSTER FAILOVER on %s: %w", replica.Addr, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		role, err := c.Client(replica).Do(ctx, "ROLE").Slice()
		if err == nil && len(role) > 0 && role[0] == "master" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testcluster: %s did not become master after CLUSTER FAILOVER", replica.Addr)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return c.WaitHealthy(ctx)
}

// Kill sends SIGKILL to the node and waits for it to exit.
func (c *Cluster) Kill(n *Node) error {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("testcluster: %s not started", n.Addr)
	}
	cmd.Process.Kill()
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("testcluster: %s did not exit after SIGKILL", n.Addr)
	}
}

// Restart starts a killed node again with its data directory (same node ID, same
// nodes.conf); it rejoins the cluster on its own, as a replica if it was failed over.
func (c *Cluster) Restart(ctx context.Context, n *Node) error {
	if n.Alive() {
		return fmt.Errorf("testcluster: %s is still running", n.Addr)
	}
	c.mu.Lock()
	if cl, ok := c.clients[n.Addr]; ok {
		cl.Close()
		delete(c.clients, n.Addr)
	}
	c.mu.Unlock()
	return c.startNode(ctx, n)
}

// Pause runs CLIENT PAUSE d ALL on the node: it stops answering clients (and the proxy)
// for d while staying in the cluster.
func (c *Cluster) Pause(ctx context.Context, n *Node, d time.Duration) error {
	if err := c.Client(n).Do(ctx, "CLIENT", "PAUSE", d.Milliseconds(), "ALL").Err(); err != nil {
		return fmt.Errorf("testcluster: CLIENT PAUSE on %s: %w", n.Addr, err)
	}
	return nil
}

// Freeze stops the node's process with SIGSTOP: it keeps its sockets (connections are
// accepted by the kernel, commands are buffered) but answers nothing, to the clients or
// the cluster bus, until Resume — a hung host as the cluster sees one.
func (c *Cluster) Freeze(n *Node) error { return n.signal(syscall.SIGSTOP) }

// Resume continues a node stopped by Freeze (SIGCONT).
func (c *Cluster) Resume(n *Node) error { return n.signal(syscall.SIGCONT) }

func (n *Node) signal(sig syscall.Signal) error {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if cmd == nil || !n.Alive() {
		return fmt.Errorf("testcluster: %s not running", n.Addr)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("testcluster: %v to %s: %w", sig, n.Addr, err)
	}
	return nil
}

// WaitHealthy waits until every live node reports cluster_state:ok, all live nodes agree
// on which master serves each slot, no slot is open, and every replica's link is up.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	var why string
	for {
		why = c.unhealthy(ctx)
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testcluster: cluster not healthy after 60s: %s", why)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("testcluster: waiting for a healthy cluster (%s): %w", why, err)
		}
	}
}

// unhealthy returns why the cluster is not healthy yet, or "".
func (c *Cluster) unhealthy(ctx context.Context) string {
	var ref string
	for _, n := range c.Nodes {
		if !n.Alive() {
			continue
		}
		cl := c.Client(n)
		info, err := cl.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Sprintf("%s: CLUSTER INFO: %v", n.Addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return n.Addr + ": cluster_state not ok"
		}
		s, err := cl.ClusterNodes(ctx).Result()
		if err != nil {
			return fmt.Sprintf("%s: CLUSTER NODES: %v", n.Addr, err)
		}
		if strings.Contains(s, "->-") || strings.Contains(s, "-<-") {
			return n.Addr + ": a slot is migrating or importing"
		}
		owners := make([]string, 16384)
		for _, cn := range parseClusterNodes(s) {
			if cn.has("master") {
				for _, r := range cn.slots {
					for i := r[0]; i <= r[1] && i < 16384; i++ {
						owners[i] = cn.addr
					}
				}
			}
			if cn.has("myself") && cn.has("slave") {
				repl, err := cl.Info(ctx, "replication").Result()
				if err != nil || !strings.Contains(repl, "master_link_status:up") {
					return n.Addr + ": replica link not up"
				}
			}
		}
		view := strings.Join(owners, ",")
		if ref == "" {
			ref = view
		} else if view != ref {
			return n.Addr + ": slot map differs from other nodes"
		}
	}
	if ref == "" {
		return "no live node"
	}
	return ""
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// Close stops every process (SIGTERM, then SIGKILL) and removes the directory.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	for _, cl := range c.clients {
		cl.Close()
	}
	c.clients = map[string]*redis.Client{}
	c.mu.Unlock()
	for _, n := range c.Nodes {
		n.mu.Lock()
		cmd, exited := n.cmd, n.exited
		n.mu.Unlock()
		if cmd == nil {
			continue
		}
		cmd.Process.Signal(syscall.SIGCONT) // a frozen node would not see SIGTERM
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	os.RemoveAll(c.dir)
}

package proxy_test

import (
	"context"
	"fmt"
	"math/rand"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// blpopCmd is BLPOP key 0 in RESP.
func blpopCmd(key string) string {
	return fmt.Sprintf("*3\r\n$5\r\nBLPOP\r\n$%d\r\n%s\r\n$1\r\n0\r\n", len(key), key)
}

// nodeBlockedIDs returns the ids of the connections blocked in BLPOP on n (its CLIENT LIST)
// and the ids of all its connections.
func nodeBlockedIDs(t *testing.T, c *testcluster.Cluster, n *testcluster.Node) (blocked, all map[string]bool) {
	t.Helper()
	out, err := c.Client(n).Do(context.Background(), "CLIENT", "LIST").Text()
	if err != nil {
		t.Fatal(err)
	}
	blocked, all = map[string]bool{}, map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := map[string]string{}
		for _, kv := range strings.Fields(line) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				f[k] = v
			}
		}
		all[f["id"]] = true
		if f["cmd"] == "blpop" && strings.Contains(f["flags"], "b") {
			blocked[f["id"]] = true
		}
	}
	return blocked, all
}

// Blocked clients wait on private connections owned by their event loop: no goroutine
// waits for each of them, and each gets its own value once it is pushed.
func TestPrivateBlockingNoGoroutinePerClient(t *testing.T) {
	c := sharedCluster(t)
	const clients = 40
	tp := startProxy(t, c, func(cfg *config.Config) { cfg.BlockingConnections = clients })
	p := tp.client(t)
	ctx := context.Background()
	key := fmt.Sprintf("privgo%d", rand.Int())
	// Warm up: the loops' connections to the nodes exist before counting.
	for i := 0; i < 10; i++ {
		p.Get(ctx, fmt.Sprintf("%s:%d", key, i))
	}
	conns := make([]*rawConn, clients)
	for i := range conns {
		conns[i] = dialRaw(t, tp.addr)
		exchange(t, conns[i], "PING\r\n", 1)
	}
	waitBlocked(t, c, 0)
	shared := testutil.MetricSum(t, tp.reg, "redis_carp_proxy_backend_connections")
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()
	for i, r := range conns {
		r.send(blpopCmd(fmt.Sprintf("{%s}%d", key, i%3)))
	}
	waitBlocked(t, c, clients)
	time.Sleep(50 * time.Millisecond) // dial goroutines, if any, end
	g1 := runtime.NumGoroutine()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	t.Logf("%d blocked clients: goroutines %d -> %d (%+.2f per client); per client: heap in use %+.0f bytes, stacks %+.0f bytes",
		clients, g0, g1, float64(g1-g0)/clients, float64(int64(m1.HeapInuse)-int64(m0.HeapInuse))/clients,
		float64(int64(m1.StackInuse)-int64(m0.StackInuse))/clients)
	if g1-g0 >= clients/4 {
		t.Errorf("goroutines grew by %d for %d blocked clients", g1-g0, clients)
	}
	// The metrics of the shared pipelines do not count the private connections.
	if got := testutil.MetricSum(t, tp.reg, "redis_carp_proxy_backend_connections"); got != shared {
		t.Errorf("backend_connections %v with %d clients blocked, %v before", got, clients, shared)
	}
	if got := testutil.MetricSum(t, tp.reg, "redis_carp_proxy_backend_pending_requests"); got != 0 {
		t.Errorf("backend_pending_requests %v while only blocked commands wait", got)
	}
	for i := 0; i < 3; i++ {
		vals := make([]any, 0, clients)
		for j := i; j < clients; j += 3 {
			vals = append(vals, fmt.Sprintf("v%d", j))
		}
		if err := p.RPush(ctx, fmt.Sprintf("{%s}%d", key, i), vals...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]bool{}
	for _, r := range conns {
		rep := r.reply()
		parts := strings.Split(rep, "\n")
		if len(parts) != 3 || parts[0] != "*2" {
			t.Fatalf("BLPOP reply %q", rep)
		}
		if got[parts[2]] {
			t.Fatalf("value %s delivered twice", parts[2])
		}
		got[parts[2]] = true
		// The client goes on after its blocking command.
		if out := exchange(t, r, "PING\r\n", 1); out[0] != "+PONG" {
			t.Fatalf("PING after BLPOP: %q", out)
		}
	}
	waitBlocked(t, c, 0)
}

// blocking-connections bounds the private connections: the next blocking command gets the
// limit's error; a client that goes away mid-block frees its slot, and its connection is
// closed on the node (not only unblocked).
func TestPrivateBlockingLimitAndDisconnect(t *testing.T) {
	c := sharedCluster(t)
	tp := startProxy(t, c, func(cfg *config.Config) { cfg.BlockingConnections = 2; cfg.TryagainRetries = 1 })
	ctx := context.Background()
	key := fmt.Sprintf("{privlim%d}", rand.Int())
	owner, err := c.OwnerOf(ctx, command.KeySlot([]byte(key)))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := nodeBlockedIDs(t, c, owner)
	a, b := dialRaw(t, tp.addr), dialRaw(t, tp.addr)
	a.send(blpopCmd(key + "a"))
	b.send(blpopCmd(key + "b"))
	waitBlocked(t, c, 2)
	third := dialRaw(t, tp.addr)
	third.send(blpopCmd(key + "c"))
	if got := third.line(); !strings.Contains(got, "all 2 blocking-connections are in use") {
		t.Fatalf("third blocking command: %q", got)
	}
	blocked, _ := nodeBlockedIDs(t, c, owner)
	var aID string
	for id := range blocked {
		if !before[id] {
			aID = id // one of the two; which one does not matter for the check below
		}
	}
	if len(blocked)-len(before) != 2 || aID == "" {
		t.Fatalf("node %s shows %d blocked BLPOP connections, want 2 more than %d", owner.Addr, len(blocked), len(before))
	}
	// Close both: the node must see both connections gone.
	a.c.Close()
	b.c.Close()
	testutil.WaitFor(t, 5*time.Second, "the node to see the private connections closed", func() bool {
		now, all := nodeBlockedIDs(t, c, owner)
		for id := range blocked {
			if !before[id] && (all[id] || now[id]) {
				return false
			}
		}
		return true
	})
	// The slots are free again.
	third.send(blpopCmd(key + "c"))
	waitBlocked(t, c, 1)
	if err := c.Client(owner).RPush(ctx, key+"c", "x").Err(); err != nil {
		t.Fatal(err)
	}
	if got := third.reply(); got != "*2\n"+key+"c\nx" {
		t.Fatalf("BLPOP after the slots were freed: %q", got)
	}
}

// A private connection whose client went away mid-block is closed, never handed to the next
// blocking command: that command is not answered with the first one's reply.
func TestPrivateConnectionNotReusedAfterQuit(t *testing.T) {
	c := sharedCluster(t)
	tp := startProxy(t, c, func(cfg *config.Config) { cfg.EventLoops = 1; cfg.BlockingConnections = 1 })
	p := tp.client(t)
	ctx := context.Background()
	key := fmt.Sprintf("{privq%d}", rand.Int())
	for i := 0; i < 3; i++ {
		a := dialRaw(t, tp.addr)
		a.send(blpopCmd(key + "gone"))
		waitBlocked(t, c, 1)
		a.c.Close()
		waitBlocked(t, c, 0)
	}
	b := dialRaw(t, tp.addr)
	b.send(blpopCmd(key + "next"))
	waitBlocked(t, c, 1)
	// A value for the departed clients' key: a connection still blocked for them would
	// take it and answer it to b.
	if err := p.RPush(ctx, key+"gone", "stale").Err(); err != nil {
		t.Fatal(err)
	}
	if err := p.RPush(ctx, key+"next", "fresh").Err(); err != nil {
		t.Fatal(err)
	}
	if got := b.reply(); got != "*2\n"+key+"next\nfresh" {
		t.Fatalf("BLPOP on the next client: %q", got)
	}
	if n, err := p.LLen(ctx, key+"gone").Result(); err != nil || n != 1 {
		t.Fatalf("the departed clients' list has %d values (%v): a closed client's BLPOP took one", n, err)
	}
	// After a normal answer the connection is reused (the limit is 1).
	for i := 0; i < 3; i++ {
		b.send(blpopCmd(key + "next"))
		waitBlocked(t, c, 1)
		if err := p.RPush(ctx, key+"next", i).Err(); err != nil {
			t.Fatal(err)
		}
		if got := b.reply(); got != fmt.Sprintf("*2\n%snext\n%d", key, i) {
			t.Fatalf("BLPOP %d: %q", i, got)
		}
	}
	p.Del(ctx, key+"gone")
}

// A blocked client whose slot moves to another master is answered MOVED by the node; the
// proxy follows it (on a private connection to the new owner) and the client gets the value
// pushed there.
func TestPrivateBlockingFollowsMoved(t *testing.T) {
	c := sharedCluster(t)
	tp := startProxy(t, c, nil)
	p := tp.client(t)
	ctx := context.Background()
	key := fmt.Sprintf("{privmv%d}l", rand.Int())
	slot := command.KeySlot([]byte(key))
	from, to, err := c.OwnerAndOther(ctx, slot)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.MoveSlots(context.Background(), []int{slot}, from); err != nil {
			t.Errorf("move slot %d back: %v", slot, err)
		}
	})
	r := dialRaw(t, tp.addr)
	r.send(blpopCmd(key))
	waitBlocked(t, c, 1)
	if err := c.MoveSlots(ctx, []int{slot}, to); err != nil {
		t.Fatal(err)
	}
	// The old owner redirects its blocked client (within a second, clientsCron); the proxy
	// blocks it again on the new owner.
	testutil.WaitFor(t, 10*time.Second, "the BLPOP blocked on the new owner", func() bool {
		return nodeInfo(t, c, to, "clients")["blocked_clients"] == "1" && nodeInfo(t, c, from, "clients")["blocked_clients"] == "0"
	})
	if err := p.RPush(ctx, key, "moved").Err(); err != nil {
		t.Fatal(err)
	}
	if got := r.reply(); got != "*2\n"+key+"\nmoved" {
		t.Fatalf("BLPOP across the move: %q", got)
	}
	if got := testutil.MetricSum(t, tp.reg, "redis_carp_proxy_redirections_total", "type", "moved"); got < 1 {
		t.Errorf("%v MOVED redirections followed", got)
	}
}

// A WATCH holds a private connection to the slot owner until EXEC (counted against
// blocking-connections); a client that goes away while watching has it closed on the node,
// and its slot is free again.
func TestPrivateWatchHeldAndFreed(t *testing.T) {
	c := sharedCluster(t)
	tp := startProxy(t, c, func(cfg *config.Config) { cfg.BlockingConnections = 1; cfg.TryagainRetries = 1 })
	ctx := context.Background()
	key := fmt.Sprintf("{privw%d}", rand.Int())
	owner, err := c.OwnerOf(ctx, command.KeySlot([]byte(key)))
	if err != nil {
		t.Fatal(err)
	}
	watching := func() int {
		out, err := c.Client(owner).Do(ctx, "CLIENT", "LIST").Text()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(out, "cmd=watch ")
	}
	a, b := dialRaw(t, tp.addr), dialRaw(t, tp.addr)
	if got := exchange(t, a, "WATCH "+key+"k\r\n", 1); got[0] != "+OK" {
		t.Fatalf("WATCH: %q", got)
	}
	b.send(blpopCmd(key + "l"))
	if got := b.line(); !strings.Contains(got, "all 1 blocking-connections are in use") {
		t.Fatalf("BLPOP while a WATCH holds the only connection: %q", got)
	}
	if got := exchange(t, a, "MULTI\r\nSET "+key+"k v\r\nEXEC\r\n", 4); got[3] != "+OK" {
		t.Fatalf("MULTI SET EXEC after WATCH: %q", got)
	}
	if got := exchange(t, b, "WATCH "+key+"k\r\n", 1); got[0] != "+OK" {
		t.Fatalf("WATCH after EXEC freed the connection: %q", got)
	}
	if n := watching(); n != 1 {
		t.Fatalf("%d node connections last ran WATCH, want 1", n)
	}
	b.c.Close()
	testutil.WaitFor(t, 5*time.Second, "the watching connection closed on the node", func() bool { return watching() == 0 })
	if got := exchange(t, a, "WATCH "+key+"k\r\nUNWATCH\r\n", 2); got[0] != "+OK" || got[1] != "+OK" {
		t.Fatalf("WATCH after the watching client left: %q", got)
	}
	c.Client(owner).Del(ctx, key+"k")
}

// Private connections to TLS nodes take the loop connections' path (dial, hand-shake with
// CLIENT ID, the bridge): a blocked command is released by a push, unblocked by CLIENT
// UNBLOCK, and a transaction runs; a client gone mid-block frees the node's connection.
func TestPrivateConnectionsOverTLSBackends(t *testing.T) {
	if out, err := exec.Command("redis-server", "--version").Output(); err != nil || !strings.Contains(string(out), "v=") {
		t.Fatalf("redis-server --version: %v", err)
	}
	files, err := testcluster.WriteTLSFiles(t.TempDir(), "node")
	if err != nil {
		t.Fatal(err)
	}
	c := testcluster.New(t, testcluster.Options{TLS: files})
	tp := startProxy(t, c, func(cfg *config.Config) {
		cfg.TLSCluster = true
		cfg.BackendTLSCertFile, cfg.BackendTLSKeyFile, cfg.BackendTLSCACertFile = files.CertFile, files.KeyFile, files.CACertFile
	})
	p := tp.client(t)
	ctx := context.Background()
	key := "{privtls}"
	r := dialRaw(t, tp.addr)
	r.send(blpopCmd(key + "l"))
	waitBlocked(t, c, 1)
	if err := p.RPush(ctx, key+"l", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if got := r.reply(); got != "*2\n"+key+"l\nv" {
		t.Fatalf("BLPOP over TLS: %q", got)
	}
	id := exchange(t, r, "CLIENT ID\r\n", 1)[0][1:]
	r.send(blpopCmd(key + "l"))
	waitBlocked(t, c, 1)
	testutil.WaitFor(t, 5*time.Second, "CLIENT UNBLOCK to unblock", func() bool {
		n, err := p.Do(ctx, "CLIENT", "UNBLOCK", id).Int()
		return err == nil && n == 1
	})
	if got := r.line(); got != "*-1" {
		t.Fatalf("BLPOP after CLIENT UNBLOCK: %q", got)
	}
	if got := exchange(t, r, "WATCH "+key+"k\r\nMULTI\r\nINCR "+key+"k\r\nEXEC\r\n", 5); got[3] != "*1" || got[4] != ":1" {
		t.Fatalf("WATCH MULTI INCR EXEC over TLS: %q", got)
	}
	r.send(blpopCmd(key + "l"))
	waitBlocked(t, c, 1)
	r.c.Close()
	waitBlocked(t, c, 0)
}

// A blocking command for a key of a slot being migrated, not on the source any more, is
// answered ASK; the proxy sends ASKING and the command on a private connection to the
// target, where it blocks until the key is pushed (itself through an ASK).
func TestPrivateBlockingFollowsAsk(t *testing.T) {
	c := sharedCluster(t)
	tp := startProxy(t, c, nil)
	p := tp.client(t)
	ctx := context.Background()
	key := fmt.Sprintf("{privask%d}l", rand.Int())
	slot := command.KeySlot([]byte(key))
	from, to, err := c.OwnerAndOther(ctx, slot)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client(to).Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", nodeID(t, c, from)).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Client(to).Del(context.Background(), key)
		c.Client(from).Do(context.Background(), "CLUSTER", "SETSLOT", slot, "STABLE")
		c.Client(to).Do(context.Background(), "CLUSTER", "SETSLOT", slot, "STABLE")
	})
	if err := c.Client(from).Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", nodeID(t, c, to)).Err(); err != nil {
		t.Fatal(err)
	}
	asks := func() float64 {
		return testutil.MetricSum(t, tp.reg, "redis_carp_proxy_redirections_total", "type", "ask")
	}
	before := asks()
	r := dialRaw(t, tp.addr)
	r.send(blpopCmd(key))
	testutil.WaitFor(t, 5*time.Second, "the BLPOP blocked on the migration's target", func() bool {
		return nodeInfo(t, c, to, "clients")["blocked_clients"] == "1"
	})
	if err := p.RPush(ctx, key, "asked").Err(); err != nil {
		t.Fatal(err)
	}
	if got := r.reply(); got != "*2\n"+key+"\nasked" {
		t.Fatalf("BLPOP during the migration: %q", got)
	}
	if got := asks() - before; got < 2 {
		t.Errorf("%v ASK redirections followed, want 2 (the BLPOP and the RPUSH)", got)
	}
}

package proxy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// receive waits for one pub/sub message.
func receive(t testing.TB, ps *redis.PubSub) *redis.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := ps.ReceiveMessage(ctx)
	if err != nil {
		t.Fatalf("no message: %v", err)
	}
	return m
}

// exchange sends input on a raw connection and returns n reply lines.
func exchange(t testing.TB, r *rawConn, input string, n int) []string {
	t.Helper()
	r.send(input)
	out := make([]string, n)
	for i := range out {
		out[i] = r.line()
	}
	return out
}

// keysOnDistinctMasters returns one key per master.
func keysOnDistinctMasters(t testing.TB, c *testcluster.Cluster, prefix string) []string {
	own := slotOwners(t, c)
	seen := map[string]bool{}
	var out []string
	for i := 0; len(out) < 3 && i < 10000; i++ {
		k := prefix + strconv.Itoa(i)
		if o := own[command.KeySlot([]byte(k))]; !seen[o] {
			seen[o] = true
			out = append(out, k)
		}
	}
	return out
}

func TestPubSubAcrossNodes(t *testing.T) {
	c := sharedCluster(t)
	tp := startProxy(t, c, nil)
	p := tp.client(t)
	ref := startReference(t)
	ctx := context.Background()
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch := fmt.Sprintf("ch%d", rand.Int())

	t.Run("SUBSCRIBE and PSUBSCRIBE get PUBLISH from every node", func(t *testing.T) {
		ps := p.Subscribe(ctx, ch+"a", ch+"b")
		defer ps.Close()
		if err := ps.PSubscribe(ctx, ch+"p*"); err != nil {
			t.Fatal(err)
		}
		// Wait until all three subscriptions are confirmed.
		for i := 0; i < 3; i++ {
			if _, err := ps.Receive(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range append(masters, c.Nodes...) {
			if err := c.Client(m).Publish(ctx, ch+"b", "from "+m.Addr).Err(); err != nil {
				t.Fatal(err)
			}
			if msg := receive(t, ps); msg.Channel != ch+"b" || msg.Payload != "from "+m.Addr {
				t.Fatalf("got %+v", msg)
			}
		}
		if err := p.Publish(ctx, ch+"pX", "via proxy").Err(); err != nil {
			t.Fatal(err)
		}
		if msg := receive(t, ps); msg.Pattern != ch+"p*" || msg.Channel != ch+"pX" || msg.Payload != "via proxy" {
			t.Fatalf("pattern message %+v", msg)
		}
	})

	t.Run("SSUBSCRIBE by slot", func(t *testing.T) {
		chans := keysOnDistinctMasters(t, c, ch+"s")
		ps := p.SSubscribe(ctx, chans[0])
		defer ps.Close()
		for _, x := range chans[1:] {
			if err := ps.SSubscribe(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
		for range chans {
			if _, err := ps.Receive(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for _, x := range chans {
			n, err := p.Do(ctx, "SPUBLISH", x, "hi "+x).Int()
			if err != nil || n != 1 {
				t.Fatalf("SPUBLISH %s = %d, %v", x, n, err)
			}
			if msg := receive(t, ps); msg.Channel != x || msg.Payload != "hi "+x {
				t.Fatalf("got %+v", msg)
			}
		}
		if err := p.Do(ctx, "SSUBSCRIBE", chans[0], chans[1]).Err(); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
			t.Errorf("SSUBSCRIBE across slots: %v", err)
		}
	})

	t.Run("RESP2 subscribed mode as Redis", func(t *testing.T) {
		k := ch + "k"
		script := "SUBSCRIBE " + ch + "x " + ch + "y\r\nGET " + k + "\r\nPING\r\nPING hello\r\nSSUBSCRIBE " + ch + "z\r\nPUNSUBSCRIBE\r\nUNSUBSCRIBE " + ch + "x\r\nSET " + k + " v\r\n" +
			"SUNSUBSCRIBE\r\nUNSUBSCRIBE\r\nGET " + k + "\r\nUNSUBSCRIBE\r\nPING\r\n"
		lines := 12 + 1 + 5 + 5 + 6 + 5 + 6 + 1 + 6 + 6 + 1 + 5 + 1
		got := exchange(t, dialRaw(t, tp.addr), script, lines)
		want := exchange(t, dialRaw(t, ref.Options().Addr), script, lines)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("proxy:\n%s\nreference:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})

	t.Run("RESET and disconnect end the subscription", func(t *testing.T) {
		r := dialRaw(t, tp.addr)
		exchange(t, r, "SUBSCRIBE "+ch+"r\r\n", 6)
		if got := exchange(t, r, "RESET\r\nGET "+ch+"\r\n", 2); got[0] != "+RESET" || got[1] != "$-1" {
			t.Errorf("after RESET: %q", got)
		}
		count := func() int64 {
			var n int64
			for _, m := range c.Nodes {
				v, _ := c.Client(m).PubSubNumSub(ctx, ch+"r").Result()
				n += v[ch+"r"]
			}
			return n
		}
		testutil.WaitFor(t, 5*time.Second, "RESET to unsubscribe on the node", func() bool { return count() == 0 })
		exchange(t, r, "SUBSCRIBE "+ch+"r\r\n", 3)
		testutil.WaitFor(t, 5*time.Second, "subscription", func() bool { return count() == 1 })
		r.c.Close()
		testutil.WaitFor(t, 5*time.Second, "disconnect to unsubscribe on the node", func() bool { return count() == 0 })
	})
}

func TestScriptingRoutedByKeys(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil).client(t)
	ref := startReference(t)
	keys := spreadKeys(t, c, 30)
	body := "redis.call('SET', KEYS[1], ARGV[1]); return {KEYS[1], redis.call('INCR', KEYS[2])}"
	sha := same(t, p, ref, "SCRIPT", "LOAD", body).val
	for i, k := range keys[:9] {
		tag := "{" + k + "}"
		same(t, p, ref, "EVAL", body, 2, tag+"a", tag+"b", i)
		same(t, p, ref, "EVALSHA", sha, 2, tag+"a", tag+"b", i)
		same(t, p, ref, "EVAL_RO", "return redis.call('GET', KEYS[1])", 1, tag+"a")
		same(t, p, ref, "EVALSHA_RO", sha, 2, tag+"a", tag+"b", i) // a write in a read-only script: the node's error
		same(t, p, ref, "MGET", tag+"a", tag+"b")
	}
	same(t, p, ref, "EVAL", "return ARGV[1]", 0, "no keys")
	same(t, p, ref, "EVAL", "return 1", 5, "k")
	same(t, p, ref, "EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", 0)
	code := "#!lua name=routed\nredis.register_function('incr2', function(keys, args) return redis.call('INCRBY', keys[1], args[1]) end)"
	same(t, p, ref, "FUNCTION", "LOAD", "REPLACE", code)
	for _, k := range keys[:9] {
		same(t, p, ref, "FCALL", "incr2", 1, k+"n", 5)
	}
	same(t, p, ref, "FUNCTION", "DELETE", "routed")
}

func TestClientConnectionCommands(t *testing.T) {
	c := sharedCluster(t)
	tp := startProxy(t, c, nil)
	p := tp.client(t)
	ref := startReference(t)
	ctx := context.Background()
	pc, rc := p.Conn(), ref.Conn()
	defer pc.Close()
	defer rc.Close()
	for _, cmd := range [][]any{{"CLIENT", "GETNAME"}, {"CLIENT", "SETNAME", "web-1"}, {"CLIENT", "GETNAME"}, {"CLIENT", "SETNAME", "a b"},
		{"CLIENT", "NO-EVICT", "on"}, {"CLIENT", "NO-EVICT", "maybe"}, {"CLIENT", "REPLY", "ON"}, {"CLIENT", "GETNAME", "x"}} {
		same(t, pc, rc, cmd...)
	}
	for _, cmd := range [][]any{{"CLIENT", "SETINFO", "LIB-NAME", "phpredis"}, {"CLIENT", "SETINFO", "LIB-VER", "6.0"}, {"CLIENT", "NO-TOUCH", "on"}} {
		if err := pc.Do(ctx, cmd...).Err(); err != nil { // Redis 7.2 commands; the reference is 7.0
			t.Errorf("%v: %v", cmd, err)
		}
	}
	id, err := pc.Do(ctx, "CLIENT", "ID").Int64()
	if err != nil || id <= 0 {
		t.Fatalf("CLIENT ID = %d, %v", id, err)
	}
	info, _ := pc.Do(ctx, "CLIENT", "INFO").Text()
	if !strings.Contains(info, fmt.Sprintf("id=%d ", id)) || !strings.Contains(info, "name=web-1") || !strings.Contains(info, "lib-name=phpredis") {
		t.Errorf("CLIENT INFO = %q", info)
	}
	list, _ := p.Do(ctx, "CLIENT", "LIST").Text()
	if !strings.Contains(list, "name=web-1") {
		t.Errorf("CLIENT LIST lacks the named client: %q", list)
	}
	// CLIENT REPLY OFF/SKIP, RESET and QUIT on the wire.
	script := "CLIENT REPLY OFF\r\nSET rk 1\r\nCLIENT REPLY ON\r\nCLIENT REPLY SKIP\r\nGET rk\r\nGET rk\r\nCLIENT SETNAME n\r\nMULTI\r\nSET rk 2\r\nRESET\r\nCLIENT GETNAME\r\nEXEC\r\nGET rk\r\nQUIT\r\n"
	want := []string{"+OK", "$1", "1", "+OK", "+OK", "+QUEUED", "+RESET", "$-1", "-ERR EXEC without MULTI", "$1", "1", "+OK"}
	for _, addr := range []string{tp.addr, ref.Options().Addr} {
		r := dialRaw(t, addr)
		if got := exchange(t, r, script, len(want)); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s: got %q", addr, got)
		}
		r.expectClosed()
	}
}

func TestVirtualClusterNode(t *testing.T) {
	c := sharedCluster(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tp := startProxy(t, c, func(cfg *config.Config) { cfg.Listen = addr; cfg.AnnounceAddress = addr })
	p := tp.client(t)
	ctx := context.Background()
	host, port, _ := net.SplitHostPort(addr)
	info, _ := p.ClusterInfo(ctx).Result()
	for _, s := range []string{"cluster_state:ok", "cluster_slots_assigned:16384", "cluster_known_nodes:1", "cluster_size:1"} {
		if !strings.Contains(info, s) {
			t.Errorf("CLUSTER INFO lacks %s: %q", s, info)
		}
	}
	id, _ := p.Do(ctx, "CLUSTER", "MYID").Text()
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(id) {
		t.Errorf("CLUSTER MYID = %q", id)
	}
	slots, err := p.ClusterSlots(ctx).Result()
	if err != nil || len(slots) != 1 || slots[0].Start != 0 || slots[0].End != 16383 || len(slots[0].Nodes) != 1 || slots[0].Nodes[0].Addr != addr || slots[0].Nodes[0].ID != id {
		t.Errorf("CLUSTER SLOTS = %+v, %v", slots, err)
	}
	shards, err := p.ClusterShards(ctx).Result()
	if err != nil || len(shards) != 1 || len(shards[0].Nodes) != 1 || shards[0].Nodes[0].IP != host || fmt.Sprint(shards[0].Nodes[0].Port) != port || shards[0].Slots[0].End != 16383 {
		t.Errorf("CLUSTER SHARDS = %+v, %v", shards, err)
	}
	nodes, _ := p.ClusterNodes(ctx).Result()
	if !strings.HasPrefix(nodes, id+" "+addr+"@") || !strings.Contains(nodes, "myself,master") || !strings.HasSuffix(strings.TrimSpace(nodes), "0-16383") {
		t.Errorf("CLUSTER NODES = %q", nodes)
	}
	for _, k := range []string{"", "a", "{user1}x", "foo{bar}"} {
		want, _ := c.Client(c.Nodes[0]).ClusterKeySlot(ctx, k).Result()
		if got, err := p.ClusterKeySlot(ctx, k).Result(); got != want || err != nil {
			t.Errorf("CLUSTER KEYSLOT %q = %d, %v; want %d", k, got, err, want)
		}
	}
	// A cluster-aware client pointed at the proxy sees one node and never learns the
	// physical addresses.
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, MaxRedirects: 0, DisableIdentity: true, Protocol: 2, ReadOnly: true})
	defer cc.Close()
	keys := spreadKeys(t, c, 100)
	pipe := cc.Pipeline()
	for i, k := range keys {
		pipe.Set(ctx, k, i, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if v, err := cc.Get(ctx, k).Int(); err != nil || v != i {
			t.Fatalf("GET %s = %d, %v", k, v, err)
		}
	}
	if _, err := cc.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Incr(ctx, "{vc}a")
		pipe.Incr(ctx, "{vc}b")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var seen []string
	cc.ForEachShard(ctx, func(ctx context.Context, shard *redis.Client) error {
		seen = append(seen, shard.Options().Addr)
		return nil
	})
	if len(seen) != 1 || seen[0] != addr {
		t.Errorf("cluster client talks to %v, want only %s", seen, addr)
	}
}

func TestAuthAndUsers(t *testing.T) {
	c := sharedCluster(t)
	tp := startProxy(t, c, func(cfg *config.Config) {
		cfg.RequirePass = "s3cret"
		cfg.Users = []config.User{{Name: "app", Password: "apppw"}, {Name: "reader", Password: "ropw", ReadOnly: true}}
	})
	ref := startReference(t)
	ctx := context.Background()
	ref.ConfigSet(ctx, "requirepass", "s3cret")
	ref.Do(ctx, "ACL", "SETUSER", "app", "on", ">apppw", "~*", "&*", "+@all")
	// Unauthenticated: the same answers as Redis.
	script := "GET k\r\nAUTH wrong\r\nAUTH app wrong\r\nHELLO 2 AUTH app wrong\r\nAUTH s3cret\r\nGET nokey\r\n"
	var outs [2][]string
	for i, addr := range []string{tp.addr, ref.Options().Addr} {
		outs[i] = exchange(t, dialRaw(t, addr), script, 6)
	}
	// As Redis 7: PING before AUTH is refused (health checks use the admin /readyz).
	if got := exchange(t, dialRaw(t, tp.addr), "PING\r\n", 1); got[0] != "-NOAUTH Authentication required." {
		t.Errorf("PING before AUTH: %q", got)
	}
	if strings.Join(outs[0], "|") != strings.Join(outs[1], "|") {
		t.Errorf("proxy %q\nredis %q", outs[0], outs[1])
	}
	app := tp.client(t, func(o *redis.Options) { o.Username, o.Password = "app", "apppw" })
	if err := app.Set(ctx, "authk", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	def := tp.client(t, func(o *redis.Options) { o.Password = "s3cret" })
	if v, err := def.Get(ctx, "authk").Result(); v != "v" || err != nil {
		t.Errorf("GET = %q, %v", v, err)
	}
	// HELLO 2 AUTH, as clients with RESP3 support do first.
	r := dialRaw(t, tp.addr)
	if got := exchange(t, r, "HELLO 2 AUTH reader ropw\r\n", 1); got[0] != "*14" {
		t.Fatalf("HELLO AUTH: %q", got)
	}
	exchange(t, r, "", 25)
	// Read-only user: reads work, writes and write-capable scripts are refused.
	steps := []struct{ cmd, want string }{
		{"GET authk\r\n", "$1"}, {"", "v"},
		{"SET authk x\r\n", "-NOPERM User has no permissions to run the 'set' command"},
		{"EVAL \"return 1\" 0\r\n", "-NOPERM User has no permissions to run the 'eval' command"},
		{"EVAL_RO \"return 1\" 0\r\n", ":1"},
		{"SCRIPT FLUSH\r\n", "-NOPERM User has no permissions to run the 'script|flush' command"},
		{"MULTI\r\n", "+OK"}, {"DEL authk\r\n", "-NOPERM User has no permissions to run the 'del' command"},
		{"EXEC\r\n", "-EXECABORT Transaction discarded because of previous errors."},
	}
	for _, s := range steps {
		if s.cmd != "" {
			r.send(s.cmd)
		}
		if got := r.line(); got != s.want {
			t.Errorf("%q: got %q, want %q", s.cmd, got, s.want)
		}
	}
}

func TestBackendCredentials(t *testing.T) {
	c := sharedCluster(t)
	ctx := context.Background()
	user, pass := fmt.Sprintf("proxy%d", rand.IntN(1e6)), "backendpw"
	for _, n := range c.Nodes {
		if err := c.Client(n).Do(ctx, "ACL", "SETUSER", user, "on", ">"+pass, "~*", "&*", "+@all").Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			c.Client(n).Do(ctx, "ACL", "DELUSER", user)
		}
	})
	p := startProxy(t, c, func(cfg *config.Config) { cfg.BackendUser, cfg.BackendPassword = user, pass }).client(t)
	keys := spreadKeys(t, c, 30)
	for _, k := range keys {
		if err := p.Set(ctx, k, "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	masters, _ := c.Masters(ctx)
	for _, m := range masters {
		list, _ := c.Client(m).ClientList(ctx).Result()
		if !strings.Contains(list, "user="+user+" ") {
			t.Errorf("no connection of user %s on %s:\n%s", user, m.Addr, list)
		}
	}
	// Wrong credentials: the proxy cannot load a slot map and says why.
	cfg := config.Default()
	cfg.ClusterSeeds = c.Seeds()[:1]
	cfg.BackendUser, cfg.BackendPassword = user, "wrong"
	srv := proxy.NewServer(cfg, nil, nil)
	sctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	if err := srv.Start(sctx); err == nil {
		t.Error("Start succeeded with a wrong backend password")
	}
	srv.Close()
}

func TestReadsLandOnReplicas(t *testing.T) {
	c := sharedCluster(t)
	ctx := context.Background()
	masters, _ := c.Masters(ctx)
	replicas, _ := c.Replicas(ctx)
	if len(replicas) == 0 {
		t.Fatal("no replicas")
	}
	keys := spreadKeys(t, c, 60)
	for _, mode := range []string{"prefer-replica", "replica"} {
		t.Run(mode, func(t *testing.T) {
			p := startProxy(t, c, func(cfg *config.Config) { cfg.ReadFrom = mode }).client(t)
			// Masters learn of their replicas by gossip, a moment after a cluster starts;
			// until the proxy's map lists them, reads go to masters (prefer-replica).
			testutil.WaitFor(t, 10*time.Second, "the proxy to know every replica", func() bool {
				info, _ := p.Info(ctx, "proxy").Result()
				return strings.Count(info, ",role=replica,") == len(masters)
			})
			for _, k := range keys {
				if err := p.HSet(ctx, k, "f", "value").Err(); err != nil {
					t.Fatal(err)
				}
			}
			calls := func(nodes []*testcluster.Node, cmd string) int {
				return sumOver(t, c, nodes, "commandstats", "cmdstat_"+cmd, "calls")
			}
			m0, r0 := calls(masters, "hstrlen"), calls(replicas, "hstrlen")
			for _, k := range keys {
				if _, err := p.HStrLen(ctx, k, "f").Result(); err != nil {
					t.Fatal(err)
				}
			}
			if m1, r1 := calls(masters, "hstrlen"), calls(replicas, "hstrlen"); m1 != m0 || r1-r0 != len(keys) {
				t.Errorf("HSTRLEN calls: masters +%d, replicas +%d; want 0 and %d", m1-m0, r1-r0, len(keys))
			}
			// Writes still go to masters (replicas only apply the replication stream).
			for _, k := range keys[:5] {
				if err := p.HSet(ctx, k, "g", "1").Err(); err != nil {
					t.Fatal(err)
				}
			}
			if rerr := sumOver(t, c, replicas, "errorstats", "errorstat_READONLY", "count"); rerr != 0 {
				t.Errorf("replicas refused %d writes", rerr)
			}
		})
	}
}

// TestPhpredisCompatibility drives the proxy with phpredis (Debian php-cli + php-redis),
// a client from another ecosystem: strings, hashes, lists, pipelines, MULTI, WATCH,
// scripting, SCAN and Pub/Sub.
func TestPhpredisCompatibility(t *testing.T) {
	php, err := exec.LookPath("php")
	if err != nil {
		t.Skip("php not installed (tools/install-deps.sh installs php-cli and php-redis)")
	}
	if out, err := exec.Command(php, "-r", `exit(extension_loaded("redis") ? 0 : 1);`).CombinedOutput(); err != nil {
		t.Skipf("php has no redis extension (install php-redis): %v %s", err, out)
	}
	c := sharedCluster(t)
	tp := startProxy(t, c, nil)
	p := tp.client(t)
	ctx := context.Background()
	prefix := fmt.Sprintf("php%d", rand.Int())
	out := p.Subscribe(ctx, prefix+":out")
	defer out.Close()
	if _, err := out.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(tp.addr)
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, php, "testdata/phpredis_compat.php", host, port, prefix)
	var stdout strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Publish until the PHP subscriber has received one (it subscribes near its end).
	var werr error
	for done := false; !done; {
		select {
		case werr = <-exited:
			done = true
		case <-time.After(50 * time.Millisecond):
			p.Publish(ctx, prefix+":in", "from go")
		}
	}
	t.Logf("php output:\n%s", stdout.String())
	if werr != nil || !strings.Contains(stdout.String(), "ALL OK") {
		t.Fatalf("phpredis script failed: %v", werr)
	}
	msg := receive(t, out)
	if msg.Payload != "from php" {
		t.Errorf("message from php = %+v", msg)
	}
}

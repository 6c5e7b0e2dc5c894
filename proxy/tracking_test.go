package proxy_test

import (
	"context"
	"fmt"
	"net"
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
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// tconn is a raw client connection that reads whole RESP frames (pushes included).
type tconn struct {
	t  testing.TB
	c  net.Conn
	rr *resp.Reader
}

func dialT(t testing.TB, addr string) *tconn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &tconn{t: t, c: c, rr: resp.NewReader(c)}
}

func (tc *tconn) send(args ...string) {
	tc.t.Helper()
	b := make([][]byte, len(args))
	for i, a := range args {
		b[i] = []byte(a)
	}
	tc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.c.Write(resp.AppendCommand(nil, b...)); err != nil {
		tc.t.Fatal(err)
	}
}

// next reads one frame within d.
func (tc *tconn) next(d time.Duration) (string, error) {
	tc.c.SetReadDeadline(time.Now().Add(d))
	f, err := tc.rr.Next()
	return string(f), err
}

func (tc *tconn) frame() string {
	tc.t.Helper()
	f, err := tc.next(5 * time.Second)
	if err != nil {
		tc.t.Fatalf("read: %v", err)
	}
	return f
}

// do sends a command and returns its reply, collecting the push frames before it.
func (tc *tconn) do(args ...string) (reply string, pushes []string) {
	tc.t.Helper()
	tc.send(args...)
	for {
		f := tc.frame()
		if strings.HasPrefix(f, ">") || strings.HasPrefix(f, "*3\r\n$7\r\nmessage\r\n") {
			pushes = append(pushes, f)
			continue
		}
		return f, pushes
	}
}

func (tc *tconn) must(want string, args ...string) []string {
	tc.t.Helper()
	got, pushes := tc.do(args...)
	if got != want {
		tc.t.Fatalf("%v: got %q, want %q", args, got, want)
	}
	return pushes
}

func inval(keys ...string) string {
	var b strings.Builder
	b.WriteString(">2\r\n$10\r\ninvalidate\r\n")
	fmt.Fprintf(&b, "*%d\r\n", len(keys))
	for _, k := range keys {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(k), k)
	}
	return b.String()
}

const invalFlush = ">2\r\n$10\r\ninvalidate\r\n_\r\n"

// waitPush sends PINGs until a push satisfying ok arrives (within d), and returns it.
func (tc *tconn) waitPush(d time.Duration, ok func(string) bool) string {
	tc.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		_, pushes := tc.do("PING")
		for _, p := range pushes {
			if ok(p) {
				return p
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tc.t.Fatalf("no matching invalidation within %v", d)
	return ""
}

// keysOnMasters returns one key per master of c, with prefix, in the slot order of the
// masters.
func keysOnMasters(t testing.TB, c *testcluster.Cluster, prefix string) []string {
	t.Helper()
	owners := slotOwners(t, c)
	seen := map[string]bool{}
	var keys []string
	for i := 0; len(keys) < len(seenMasters(owners)) && i < 100000; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		o := owners[command.KeySlot([]byte(k))]
		if !seen[o] {
			seen[o] = true
			keys = append(keys, k)
		}
	}
	return keys
}

func seenMasters(owners map[int]string) map[string]bool {
	m := map[string]bool{}
	for _, o := range owners {
		m[o] = true
	}
	return m
}

// TestTrackingRepliesAgainstReference sends the tracking subcommands, their options and
// their mistakes to the proxy and to a standalone redis-server, in RESP2 and RESP3, and
// compares the replies byte for byte.
func TestTrackingRepliesAgainstReference(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	ref := startReference(t)
	seq := [][]string{
		{"CLIENT", "TRACKING"},
		{"CLIENT", "TRACKING", "maybe"},
		{"CLIENT", "GETREDIR"},
		{"CLIENT", "TRACKINGINFO"},
		{"CLIENT", "CACHING", "yes"},
		{"CLIENT", "TRACKING", "on", "REDIRECT", "987654"},
		{"CLIENT", "TRACKING", "on", "REDIRECT", "abc"},
		{"CLIENT", "TRACKING", "on", "PREFIX", "a"},
		{"CLIENT", "TRACKING", "on", "OPTIN", "OPTOUT"},
		{"CLIENT", "TRACKING", "on", "BCAST", "OPTIN"},
		{"CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "a", "PREFIX", "ab"},
		{"CLIENT", "TRACKING", "on", "bogus"},
		{"CLIENT", "TRACKING", "on", "PREFIX"},
		{"CLIENT", "TRACKING", "on", "OPTIN"},
		{"CLIENT", "GETREDIR"},
		{"CLIENT", "TRACKINGINFO"},
		{"CLIENT", "CACHING", "yes"},
		{"CLIENT", "TRACKINGINFO"},
		{"CLIENT", "CACHING", "no"},
		{"CLIENT", "CACHING", "maybe"},
		{"CLIENT", "CACHING"},
		{"CLIENT", "TRACKING", "on", "OPTOUT"},
		{"CLIENT", "TRACKING", "on", "BCAST"},
		{"CLIENT", "TRACKING", "off"},
		{"CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "a", "PREFIX", "b"},
		{"CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "x"},
		{"CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "xy"},
		{"CLIENT", "TRACKINGINFO"},
		{"CLIENT", "CACHING", "yes"},
		{"CLIENT", "TRACKING", "off"},
		{"CLIENT", "TRACKING", "on", "NOLOOP", "OPTOUT"},
		{"CLIENT", "TRACKINGINFO"},
		{"CLIENT", "CACHING", "no"},
		{"CLIENT", "TRACKINGINFO"},
		{"CLIENT", "GETREDIR"},
		{"CLIENT", "TRACKING", "off"},
		{"CLIENT", "GETREDIR"},
		{"CLIENT", "TRACKINGINFO"},
	}
	for _, proto := range []string{"2", "3"} {
		pc, rc := dialT(t, p.addr), dialT(t, ref.Options().Addr)
		if proto == "3" {
			pc.do("HELLO", "3")
			rc.do("HELLO", "3")
		}
		for _, args := range seq {
			got, _ := pc.do(args...)
			want, _ := rc.do(args...)
			if got != want {
				t.Errorf("RESP%s %v: proxy %q, redis-server %q", proto, args, got, want)
			}
		}
	}
}

// TestTrackingInvalidationRESP3 reads a key on every master with tracking on; a change by
// another client through the proxy, a change made directly at the node, an expiry and a
// FLUSHALL at a node each reach the reader as Redis 7's push, and an invalidation of a
// write whose reply the writer has already seen precedes the reader's next reply.
func TestTrackingInvalidationRESP3(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, func(cfg *config.Config) { cfg.EnableFlushall = true })
	ctx := context.Background()
	pre := fmt.Sprintf("trk%d:", time.Now().UnixNano())
	keys := keysOnMasters(t, c, pre)
	w := p.client(t)
	for _, k := range keys {
		if err := w.Set(ctx, k, "v1", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	a := dialT(t, p.addr)
	a.do("HELLO", "3")
	a.must("+OK\r\n", "CLIENT", "TRACKING", "on")
	for _, k := range keys {
		a.must("$2\r\nv1\r\n", "GET", k)
	}
	// Through the proxy: the writer's reply is seen (by this test, a third party), then
	// the reader's very next reply comes after the invalidation.
	p.srv.SetTrackingInvalidationDelay(30 * time.Millisecond) // a slow invalidation path
	defer p.srv.SetTrackingInvalidationDelay(0)
	for _, k := range keys {
		if err := w.Set(ctx, k, "v2", 0).Err(); err != nil {
			t.Fatal(err)
		}
		pushes := a.must("+PONG\r\n", "PING")
		if len(pushes) != 1 || pushes[0] != inval(k) {
			t.Fatalf("after SET %s: pushes %q, want %q", k, pushes, inval(k))
		}
	}
	// Not read again: no invalidation for the next change.
	for _, k := range keys {
		w.Set(ctx, k, "v3", 0)
	}
	if pushes := a.must("+PONG\r\n", "PING"); len(pushes) != 0 {
		t.Fatalf("key not read again, got %q", pushes)
	}
	// Directly at the node.
	owners := slotOwners(t, c)
	for _, k := range keys {
		a.must("$2\r\nv3\r\n", "GET", k)
	}
	for _, k := range keys {
		node := c.Client(nodeByAddr(t, c, owners[command.KeySlot([]byte(k))]))
		if err := node.Set(ctx, k, "v4", 0).Err(); err != nil {
			t.Fatal(err)
		}
		pushes := a.must("+PONG\r\n", "PING")
		if len(pushes) != 1 || pushes[0] != inval(k) {
			t.Fatalf("after SET %s at the node: pushes %q", k, pushes)
		}
	}
	// Expiry.
	w.Set(ctx, keys[0], "e", 150*time.Millisecond)
	a.must("$1\r\ne\r\n", "GET", keys[0])
	// The SET's own invalidation may have arrived while the GET ran: then it came before
	// the reply and once more after it (the change may have followed the read), and the
	// key stays tracked.
	a.must("+PONG\r\n", "PING")
	a.waitPush(5*time.Second, func(s string) bool { return s == inval(keys[0]) })
	// FLUSHALL through the proxy: a null invalidation.
	a.must("_\r\n", "GET", keys[0]) // nothing there: tracked anyway, as Redis does
	a.must("$2\r\nv4\r\n", "GET", keys[1])
	if err := w.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	pushes := a.must("+PONG\r\n", "PING")
	if len(pushes) == 0 || pushes[0] != invalFlush {
		t.Fatalf("after FLUSHALL: pushes %q", pushes)
	}
	if got := testutil.MetricSum(t, p.reg, "redis_carp_proxy_tracking_flushes_total"); got < 1 {
		t.Errorf("tracking_flushes_total %v", got)
	}
	if got := testutil.MetricSum(t, p.reg, "redis_carp_proxy_tracking_invalidations_total"); got < float64(2*len(keys)+1) {
		t.Errorf("tracking_invalidations_total %v", got)
	}
	if got := testutil.MetricSum(t, p.reg, "redis_carp_proxy_tracking_clients"); got != 1 {
		t.Errorf("tracking_clients %v", got)
	}
}

func nodeByAddr(t testing.TB, c *testcluster.Cluster, addr string) *testcluster.Node {
	t.Helper()
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	t.Fatalf("no node %s", addr)
	return nil
}

// TestTrackingModes covers BCAST with prefixes, OPTIN with CLIENT CACHING, OPTOUT, NOLOOP,
// and tracking inside MULTI/EXEC and Lua scripts.
func TestTrackingModes(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	ctx := context.Background()
	w := p.client(t)
	pre := fmt.Sprintf("trm%d", time.Now().UnixNano())

	t.Run("bcast-prefixes", func(t *testing.T) {
		a := dialT(t, p.addr)
		a.do("HELLO", "3")
		a.must("+OK\r\n", "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", pre+"a:", "PREFIX", pre+"b:")
		// Keys never read, on whichever master: every write under a prefix is reported.
		for i := 0; i < 6; i++ {
			in := fmt.Sprintf("%sa:%d", pre, i)
			out := fmt.Sprintf("%sc:%d", pre, i)
			w.Set(ctx, out, "x", 0)
			w.Set(ctx, in, "x", 0)
			pushes := a.must("+PONG\r\n", "PING")
			if len(pushes) != 1 || pushes[0] != inval(in) {
				t.Fatalf("BCAST after SET %s and %s: %q", in, out, pushes)
			}
		}
	})

	t.Run("optin", func(t *testing.T) {
		a := dialT(t, p.addr)
		a.do("HELLO", "3")
		a.must("+OK\r\n", "CLIENT", "TRACKING", "on", "OPTIN")
		k1, k2 := pre+"in1", pre+"in2"
		a.do("GET", k1) // not cached: not tracked
		a.must("+OK\r\n", "CLIENT", "CACHING", "yes")
		a.do("GET", k2)
		a.do("GET", k1) // the CACHING yes was for the previous command only
		w.Set(ctx, k1, "x", 0)
		w.Set(ctx, k2, "x", 0)
		pushes := a.must("+PONG\r\n", "PING")
		if len(pushes) != 1 || pushes[0] != inval(k2) {
			t.Fatalf("OPTIN: %q, want only %q", pushes, inval(k2))
		}
	})

	t.Run("optout", func(t *testing.T) {
		a := dialT(t, p.addr)
		a.do("HELLO", "3")
		a.must("+OK\r\n", "CLIENT", "TRACKING", "on", "OPTOUT")
		k1, k2 := pre+"out1", pre+"out2"
		a.must("+OK\r\n", "CLIENT", "CACHING", "no")
		a.do("GET", k1)
		a.do("GET", k2)
		w.Set(ctx, k1, "x", 0)
		w.Set(ctx, k2, "x", 0)
		pushes := a.must("+PONG\r\n", "PING")
		if len(pushes) != 1 || pushes[0] != inval(k2) {
			t.Fatalf("OPTOUT: %q, want only %q", pushes, inval(k2))
		}
	})

	t.Run("noloop", func(t *testing.T) {
		a := dialT(t, p.addr)
		a.do("HELLO", "3")
		a.must("+OK\r\n", "CLIENT", "TRACKING", "on", "NOLOOP")
		k1, k2 := pre+"nl1", pre+"nl2"
		a.do("GET", k1)
		a.do("GET", k2)
		a.must("+OK\r\n", "SET", k1, "mine")
		w.Set(ctx, k2, "theirs", 0)
		pushes := a.must("+PONG\r\n", "PING")
		if len(pushes) != 1 || pushes[0] != inval(k2) {
			t.Fatalf("NOLOOP: %q, want only %q", pushes, inval(k2))
		}
	})

	t.Run("multi-and-lua", func(t *testing.T) {
		a := dialT(t, p.addr)
		a.do("HELLO", "3")
		a.must("+OK\r\n", "CLIENT", "TRACKING", "on")
		km, kl := "{"+pre+"}m", "{"+pre+"}l"
		w.Set(ctx, km, "1", 0)
		w.Set(ctx, kl, "2", 0)
		// CLIENT TRACKING inside MULTI is refused (it would reach the node running the
		// transaction) and aborts it.
		a.must("+OK\r\n", "MULTI")
		a.must("-ERR Command not allowed inside a transaction\r\n", "CLIENT", "TRACKING", "off")
		a.must("-EXECABORT Transaction discarded because of previous errors.\r\n", "EXEC")
		a.must("+OK\r\n", "MULTI")
		a.must("+QUEUED\r\n", "GET", km)
		a.must("*1\r\n$1\r\n1\r\n", "EXEC")
		a.must("$1\r\n2\r\n", "EVAL", "return redis.call('GET', KEYS[1])", "1", kl)
		w.Set(ctx, km, "x", 0)
		pushes := a.must("+PONG\r\n", "PING")
		if len(pushes) != 1 || pushes[0] != inval(km) {
			t.Fatalf("MULTI: %q", pushes)
		}
		w.Set(ctx, kl, "x", 0)
		pushes = a.must("+PONG\r\n", "PING")
		if len(pushes) != 1 || pushes[0] != inval(kl) {
			t.Fatalf("EVAL: %q", pushes)
		}
		// A write inside a transaction by another client.
		a.must("$1\r\nx\r\n", "GET", km)
		tx := w.TxPipeline()
		tx.Set(ctx, km, "y", 0)
		if _, err := tx.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		pushes = a.must("+PONG\r\n", "PING")
		if len(pushes) != 1 || pushes[0] != inval(km) {
			t.Fatalf("write in MULTI: %q", pushes)
		}
	})
}

// TestTrackingRESP2Redirect: a RESP2 client tracks with REDIRECT to a connection
// subscribed to __redis__:invalidate, which gets Redis 7's messages (a key list, and $-1
// for a flush).
func TestTrackingRESP2Redirect(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	ctx := context.Background()
	w := p.client(t)
	k := fmt.Sprintf("trr%d", time.Now().UnixNano())
	w.Set(ctx, k, "1", 0)
	r := dialT(t, p.addr)
	id, _ := r.do("CLIENT", "ID")
	id = strings.TrimSuffix(strings.TrimPrefix(id, ":"), "\r\n")
	r.must("*3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n:1\r\n", "SUBSCRIBE", "__redis__:invalidate")
	a := dialT(t, p.addr)
	a.must("+OK\r\n", "CLIENT", "TRACKING", "on", "REDIRECT", id)
	a.must(":"+id+"\r\n", "CLIENT", "GETREDIR")
	a.must("$1\r\n1\r\n", "GET", k)
	w.Set(ctx, k, "2", 0)
	want := "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$" + strconv.Itoa(len(k)) + "\r\n" + k + "\r\n"
	if got := r.frame(); got != want {
		t.Fatalf("redirected invalidation %q, want %q", got, want)
	}
	// The redirect target goes away: TRACKINGINFO says so.
	r.c.Close()
	testutil.WaitFor(t, 5*time.Second, "broken_redirect", func() bool {
		got, _ := a.do("CLIENT", "TRACKINGINFO")
		return strings.Contains(got, "broken_redirect")
	})
}

// TestTrackingKeyspaceNotifications: a RESP3 client both tracks a key and subscribes to its
// keyspace notifications; a change brings both pushes.
func TestTrackingKeyspaceNotifications(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	ctx := context.Background()
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range masters {
		if err := c.Client(m).ConfigSet(ctx, "notify-keyspace-events", "K$").Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, m := range masters {
			c.Client(m).ConfigSet(ctx, "notify-keyspace-events", "")
		}
	})
	w := p.client(t)
	k := fmt.Sprintf("trk%d", time.Now().UnixNano())
	w.Set(ctx, k, "1", 0)
	a := dialT(t, p.addr)
	a.do("HELLO", "3")
	a.must("+OK\r\n", "CLIENT", "TRACKING", "on")
	a.must("$1\r\n1\r\n", "GET", k)
	ch := "__keyspace@0__:" + k
	a.send("SUBSCRIBE", ch)
	if got := a.frame(); !strings.HasPrefix(got, ">3\r\n$9\r\nsubscribe\r\n") {
		t.Fatalf("subscribe: %q", got)
	}
	w.Set(ctx, k, "2", 0)
	var gotInval, gotEvent bool
	for !(gotInval && gotEvent) {
		f := a.frame()
		switch {
		case f == inval(k):
			gotInval = true
		case strings.HasPrefix(f, ">3\r\n$7\r\nmessage\r\n") && strings.Contains(f, ch) && strings.HasSuffix(f, "$3\r\nset\r\n"):
			gotEvent = true
		default:
			t.Fatalf("unexpected frame %q", f)
		}
	}
}

// TestTrackingTableBound: with tracking-table-max-keys 4, reading a fifth key evicts one,
// whose reader gets its invalidation at once.
func TestTrackingTableBound(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, func(cfg *config.Config) { cfg.TrackingTableMaxKeys = 4 })
	a := dialT(t, p.addr)
	a.do("HELLO", "3")
	a.must("+OK\r\n", "CLIENT", "TRACKING", "on")
	pre := fmt.Sprintf("trb%d:", time.Now().UnixNano())
	var evicted []string
	for i := 0; i < 10; i++ {
		_, pushes := a.do("GET", pre+strconv.Itoa(i))
		evicted = append(evicted, pushes...)
	}
	_, pushes := a.do("PING")
	evicted = append(evicted, pushes...)
	if len(evicted) != 6 {
		t.Fatalf("evictions: %q, want 6", evicted)
	}
	if got := testutil.MetricSum(t, p.reg, "redis_carp_proxy_tracking_keys"); got != 4 {
		t.Errorf("tracking_keys %v, want 4", got)
	}
	// INFO shows the proxy's table, not the nodes' (which hold the proxy's BCAST
	// invalidation connections).
	b := dialT(t, p.addr)
	b.do("HELLO", "3")
	b.must("+OK\r\n", "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", pre+"x", "PREFIX", pre+"y")
	info, err := p.client(t).Info(context.Background(), "stats", "clients").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tracking_total_keys:4\r\n", "tracking_total_items:4\r\n", "tracking_total_prefixes:2\r\n", "tracking_clients:2\r\n"} {
		if !strings.Contains(info, want) {
			t.Errorf("INFO lacks %q:\n%s", want, info)
		}
	}
	if got := testutil.MetricSum(t, p.reg, "redis_carp_proxy_tracking_invalidations_total", "reason", "table_full"); got != 6 {
		t.Errorf("tracking_invalidations_total{reason=table_full} %v, want 6", got)
	}
}

// hasKeys reports whether the push invalidates every key in keys (or is a flush).
func hasKeys(push string, keys ...string) bool {
	if push == invalFlush {
		return true
	}
	if !strings.HasPrefix(push, ">2\r\n$10\r\ninvalidate\r\n") {
		return false
	}
	for _, k := range keys {
		if !strings.Contains(push, "\r\n"+k+"\r\n") {
			return false
		}
	}
	return true
}

// waitKeys sends PINGs until every key in keys was invalidated (or a flush came), within d.
func (tc *tconn) waitKeys(d time.Duration, keys ...string) {
	tc.t.Helper()
	left := map[string]bool{}
	for _, k := range keys {
		left[k] = true
	}
	tc.waitPush(d, func(p string) bool {
		if p == invalFlush {
			left = nil
			return true
		}
		for k := range left {
			if hasKeys(p, k) {
				delete(left, k)
			}
		}
		return len(left) == 0
	})
}

// TestTrackingTopologyChanges: a resharded slot and a master killed and replaced each
// invalidate the keys tracking clients read there, including keys that did not exist (no
// node reports a change for them: the proxy invalidates them because their slot moved), and
// flush BCAST clients when the node is lost.
func TestTrackingTopologyChanges(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{NodeTimeout: 3 * time.Second})
	p := startProxy(t, c, func(cfg *config.Config) { cfg.BackendReadTimeout = 400 * time.Millisecond })
	ctx := context.Background()
	w := p.client(t)
	pre := fmt.Sprintf("trt%d", time.Now().UnixNano())

	// A frozen master (shorter than the cluster's node timeout): a tracking client's
	// command waits for its invalidation connection at most backend-read-timeout, then the
	// connection is given up and the keys of its slots are invalidated.
	{
		kf := "{" + pre + "f}a"
		frozen, err := c.OwnerOf(ctx, command.KeySlot([]byte(kf)))
		if err != nil {
			t.Fatal(err)
		}
		a := dialT(t, p.addr)
		a.do("HELLO", "3")
		a.must("+OK\r\n", "CLIENT", "TRACKING", "on")
		a.must("_\r\n", "GET", kf)
		if err := c.Freeze(frozen); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		pushes := a.must("+PONG\r\n", "PING")
		took := time.Since(start)
		resumeErr := c.Resume(frozen)
		if took > 1500*time.Millisecond {
			t.Errorf("PING of a tracking client took %v while a master was frozen", took)
		}
		if resumeErr != nil {
			t.Fatal(resumeErr)
		}
		if len(pushes) == 0 {
			a.waitKeys(5*time.Second, kf)
		} else if !hasKeys(pushes[0], kf) {
			t.Fatalf("frozen master: pushes %q", pushes)
		}
		a.c.Close()
		if err := c.WaitHealthy(ctx); err != nil {
			t.Fatal(err)
		}
		// The connection to the resumed node is made again (which invalidates its keys:
		// connection_made) before the next step counts slot_moved invalidations.
		testutil.WaitFor(t, 10*time.Second, "invalidation connections up", func() bool {
			return p.srv.TrackingConnections() == 3
		})
		time.Sleep(200 * time.Millisecond)
	}

	// Resharding.
	k1, k1missing := "{"+pre+"r}a", "{"+pre+"r}b"
	slot := command.KeySlot([]byte(k1))
	if err := w.Set(ctx, k1, "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	owner, other, err := c.OwnerAndOther(ctx, slot)
	if err != nil {
		t.Fatal(err)
	}
	a := dialT(t, p.addr)
	a.do("HELLO", "3")
	a.must("+OK\r\n", "CLIENT", "TRACKING", "on")
	a.must("$1\r\n1\r\n", "GET", k1)
	a.must("_\r\n", "GET", k1missing)
	t.Logf("moving slot %d from %s to %s", slot, owner.Addr, other.Addr)
	if err := c.MoveSlots(ctx, []int{slot}, other); err != nil {
		t.Fatal(err)
	}
	a.waitKeys(10*time.Second, k1, k1missing)
	if got := testutil.MetricSum(t, p.reg, "redis_carp_proxy_tracking_invalidations_total", "reason", "slot_moved"); got < 1 {
		t.Errorf("tracking_invalidations_total{reason=slot_moved} %v", got)
	}

	// A master killed and replaced by its replica.
	k2, k2missing := "{"+pre+"k}a", "{"+pre+"k}b"
	if err := w.Set(ctx, k2, "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	victim, err := c.OwnerOf(ctx, command.KeySlot([]byte(k2)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client(victim).Do(ctx, "WAIT", 1, 2000).Err(); err != nil {
		t.Fatal(err)
	}
	a.must("$1\r\n1\r\n", "GET", k2)
	a.must("_\r\n", "GET", k2missing)
	b := dialT(t, p.addr)
	b.do("HELLO", "3")
	b.must("+OK\r\n", "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "{"+pre)
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	a.waitKeys(20*time.Second, k2, k2missing)
	b.waitPush(20*time.Second, func(p string) bool { return p == invalFlush })
	// Tracking goes on with the new master.
	testutil.WaitFor(t, 30*time.Second, "the replica serves the slot", func() bool {
		o, err := c.OwnerOf(ctx, command.KeySlot([]byte(k2)))
		return err == nil && o != victim && w.Set(ctx, k2, "2", 0).Err() == nil
	})
	a.must("$1\r\n2\r\n", "GET", k2)
	if err := w.Set(ctx, k2, "3", 0).Err(); err != nil {
		t.Fatal(err)
	}
	a.waitKeys(5*time.Second, k2)
	if got := testutil.MetricSum(t, p.reg, "redis_carp_proxy_tracking_flushes_total"); got < 1 {
		t.Errorf("tracking_flushes_total %v", got)
	}
}

// TestTrackingGoRedisCache runs go-redis v9's own client-side cache (RESP3, CLIENT
// TRACKING on) through the proxy: a second read of a key is served from the client's
// memory, and after another client's write has been answered, a round trip on the cached
// connection (which reads the invalidation before its reply) makes the next read fetch
// the new value, for keys on every master, many times over.
func TestTrackingGoRedisCache(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	ctx := context.Background()
	cache := redis.NewLocalCache(redis.CacheConfig{MaxEntries: 1024})
	reader := p.client(t, func(o *redis.Options) {
		o.Protocol, o.ClientSideCache, o.PoolSize = 3, cache, 1
	})
	writer := p.client(t)
	keys := keysOnMasters(t, c, fmt.Sprintf("trg%d:", time.Now().UnixNano()))
	for _, k := range keys {
		if err := writer.Set(ctx, k, "0", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// A slow invalidation path: the reader's round trip must still bring the
	// invalidation first (tracker.sync).
	p.srv.SetTrackingInvalidationDelay(20 * time.Millisecond)
	for round := 1; round <= 30; round++ {
		for _, k := range keys {
			want := strconv.Itoa(round - 1)
			for i := 0; i < 3; i++ {
				if got, err := reader.Get(ctx, k).Result(); err != nil || got != want {
					t.Fatalf("round %d GET %s: %q %v, want %q", round, k, got, err, want)
				}
			}
			if err := writer.Set(ctx, k, strconv.Itoa(round), 0).Err(); err != nil {
				t.Fatal(err)
			}
			if err := reader.Ping(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	st := reader.CSCStats()
	t.Logf("go-redis cache: %d hits, %d misses", st.Hits, st.Misses)
	if st.Hits < uint64(30*len(keys)) || st.Misses < uint64(30*len(keys)) {
		t.Errorf("go-redis cache stats %+v: every value should be fetched once and then hit twice", st)
	}
}

// BenchmarkTrackingGET is a GET from one RESP3 connection, one at a time, without and with
// CLIENT TRACKING on (default mode: the key is recorded; bcast: nothing is recorded), for
// the extra work per read of a tracking client (docs/architecture.md).
func BenchmarkTrackingGET(b *testing.B) {
	c := sharedCluster(b)
	p := startProxy(b, c, nil)
	w := p.client(b)
	w.Set(context.Background(), "benchtrk", "v", 0)
	for _, mode := range []string{"off", "on", "bcast"} {
		b.Run(mode, func(b *testing.B) {
			a := dialT(b, p.addr)
			a.do("HELLO", "3")
			switch mode {
			case "on":
				a.must("+OK\r\n", "CLIENT", "TRACKING", "on")
			case "bcast":
				a.must("+OK\r\n", "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "none:")
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if got, _ := a.do("GET", "benchtrk"); got != "$1\r\nv\r\n" {
					b.Fatalf("GET: %q", got)
				}
			}
		})
	}
}

// trackingConnsAtNodes counts the connections with tracking on (flag t) at the masters.
func trackingConnsAtNodes(t testing.TB, c *testcluster.Cluster) int {
	t.Helper()
	ctx := context.Background()
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range masters {
		list, err := c.Client(m).ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(list, "\n") {
			for _, f := range strings.Fields(line) {
				if strings.HasPrefix(f, "flags=") && strings.Contains(f, "t") {
					n++
				}
			}
		}
	}
	return n
}

// TestTrackingIdleStop: no invalidation connection exists before a client enables tracking
// (a proxy whose clients never track costs the nodes nothing); they close once the last
// tracking client has been gone for a while, and open again for the next one.
func TestTrackingIdleStop(t *testing.T) {
	defer proxy.SetTrackIdleStop(300 * time.Millisecond)()
	c := sharedCluster(t)
	base := trackingConnsAtNodes(t, c) // other tests' proxies may still be closing
	p := startProxy(t, c, nil)
	ctx := context.Background()
	w := p.client(t)
	masters, _ := c.Masters(ctx)
	if n := p.srv.TrackingConnections(); n != 0 {
		t.Fatalf("%d invalidation connections before any client tracks", n)
	}
	for round := 0; round < 2; round++ {
		a := dialT(t, p.addr)
		a.do("HELLO", "3")
		a.must("+OK\r\n", "CLIENT", "TRACKING", "on")
		if n := p.srv.TrackingConnections(); n != len(masters) {
			t.Fatalf("round %d: %d invalidation connections, want %d", round, n, len(masters))
		}
		if n := trackingConnsAtNodes(t, c); n < len(masters) {
			t.Fatalf("round %d: %d tracking connections at the nodes", round, n)
		}
		k := fmt.Sprintf("tri%d:%d", time.Now().UnixNano(), round)
		a.do("GET", k)
		w.Set(ctx, k, "1", 0)
		if pushes := a.must("+PONG\r\n", "PING"); len(pushes) != 1 || pushes[0] != inval(k) {
			t.Fatalf("round %d: pushes %q", round, pushes)
		}
		a.c.Close()
		testutil.WaitFor(t, 10*time.Second, "invalidation connections closed", func() bool {
			return p.srv.TrackingConnections() == 0 && trackingConnsAtNodes(t, c) <= base
		})
	}
}

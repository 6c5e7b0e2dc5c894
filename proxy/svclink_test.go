package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// nodeFlagConns returns the ids of n's connections whose CLIENT LIST flags contain flag.
func nodeFlagConns(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, flag string) []string {
	t.Helper()
	out, err := c.Client(n).Do(context.Background(), "CLIENT", "LIST").Text()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var id string
		match := false
		for _, kv := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(kv, "id="); ok {
				id = v
			}
			if v, ok := strings.CutPrefix(kv, "flags="); ok && strings.Contains(v, flag) {
				match = true
			}
		}
		if match {
			ids = append(ids, id)
		}
	}
	return ids
}

// MONITOR's node connections and client-side caching's invalidation connections are
// service connections: private node connections of the first event loop in push mode, one
// per master each while a monitor and a tracking client are attached, with no goroutine per
// node connection and no blocking-connections slot taken. Script commands reach the
// monitor; a connection the node drops is made again (and the tracked keys of its node's
// slots are invalidated meanwhile); the nodes see MONITOR's connections closed once the
// last monitor leaves.
func TestServiceConnsOnTheLoop(t *testing.T) {
	c := sharedCluster(t)
	ctx := context.Background()
	masters := threeMasters(t, c)
	tp := startProxy(t, c, func(cfg *config.Config) { cfg.BlockingConnections = 1 })
	w := tp.client(t)
	owners := slotOwners(t, c)
	keys := keysOnMasters(t, c, fmt.Sprintf("svc%d:", time.Now().UnixNano()))
	keyOf := map[string]string{} // master address → a key it serves
	for _, k := range keys {
		keyOf[owners[command.KeySlot([]byte(k))]] = k
	}
	if err := w.Get(ctx, keys[0]).Err(); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}

	count := func(flag string) map[string]int {
		out := map[string]int{}
		for _, m := range masters {
			out[m.Addr] = len(nodeFlagConns(t, c, m, flag))
		}
		return out
	}
	waitCounts := func(what, flag string, want map[string]int, delta int) {
		t.Helper()
		testutil.WaitFor(t, 10*time.Second, what, func() bool {
			got := count(flag)
			for a, n := range want {
				if got[a] != n+delta {
					return false
				}
			}
			return true
		})
	}
	monBefore, trackBefore := count("O"), count("t")

	mon := dialResp(t, tp.addr)
	tr := dialT(t, tp.addr)
	mon.do("PING")
	tr.do("HELLO", "3")
	runtime.GC()
	time.Sleep(100 * time.Millisecond)
	g0 := runtime.NumGoroutine()
	if got := mon.do("MONITOR"); got != "+OK" {
		t.Fatalf("MONITOR: %q", got)
	}
	tr.must("+OK\r\n", "CLIENT", "TRACKING", "on")
	waitCounts("a MONITOR connection on every master", "O", monBefore, 1)
	waitCounts("an invalidation connection on every master", "t", trackBefore, 1)
	if got := tp.srv.ServiceConns(); got != 2*len(masters) {
		t.Errorf("the first loop holds %d service connections, want %d", got, 2*len(masters))
	}
	time.Sleep(300 * time.Millisecond) // set-up goroutines end
	grew := runtime.NumGoroutine() - g0
	t.Logf("MONITOR and tracking with %d masters: %d more goroutines", len(masters), grew)
	// One for MONITOR's retries, one for tracking's manager: none per node connection.
	if grew > 2 {
		t.Errorf("goroutines grew by %d with %d MONITOR and %d invalidation connections", grew, len(masters), len(masters))
	}

	// They take no blocking-connections slot: the only one is free.
	if err := w.BLPop(ctx, time.Second, keys[0]+"list").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("BLPOP with blocking-connections 1: %v", err)
	}

	// Script commands of every master reach the monitor.
	evalAll := func() {
		t.Helper()
		for _, k := range keyOf {
			if err := w.Eval(ctx, "redis.call('set', KEYS[1], 'x') return 1", []string{k}).Err(); err != nil {
				t.Fatal(err)
			}
		}
		want := map[string]bool{}
		for _, k := range keyOf {
			want[k] = true
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(want) > 0 && time.Now().Before(deadline) {
			line, err := mon.read(time.Until(deadline))
			if err != nil {
				break
			}
			if !strings.Contains(line, " [0 lua] ") {
				continue
			}
			for k := range want {
				if strings.Contains(line, `"set" "`+k+`" "x"`) {
					delete(want, k)
				}
			}
		}
		if len(want) > 0 {
			t.Fatalf("no script command shown for %v", want)
		}
	}
	evalAll()

	// A dropped connection is made again: MONITOR's within monitorNodeRetry, tracking's
	// after invalidating the keys of the node's slots.
	victim := masters[0]
	if keyOf[victim.Addr] == "" {
		t.Fatalf("no key on %s: %v", victim.Addr, keyOf)
	}
	tk := "{" + keyOf[victim.Addr] + "}t" // tracked, on the victim
	tr.must("_\r\n", "GET", tk)
	for _, flag := range []string{"O", "t"} {
		ids := nodeFlagConns(t, c, victim, flag)
		if len(ids) == 0 {
			t.Fatalf("no %s connection on %s", flag, victim.Addr)
		}
		for _, id := range ids {
			if err := c.Client(victim).Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	tr.waitKeys(5*time.Second, tk)
	waitCounts("MONITOR connections made again", "O", monBefore, 1)
	waitCounts("invalidation connections made again", "t", trackBefore, 1)
	testutil.WaitFor(t, 5*time.Second, "service connections made again", func() bool {
		return tp.srv.ServiceConns() == 2*len(masters)
	})
	evalAll()
	// The new invalidation connection reports writes (once up, its connection_made
	// invalidation has gone out).
	testutil.WaitFor(t, 5*time.Second, "invalidation connections up", func() bool {
		return tp.srv.TrackingConnections() == len(masters)
	})
	time.Sleep(200 * time.Millisecond)
	tr.do("PING")
	tr.must("_\r\n", "GET", tk)
	writes := testutil.MetricSum(t, tp.reg, "redis_carp_proxy_tracking_invalidations_total", "reason", "write")
	if err := w.Set(ctx, tk, "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	tr.waitKeys(5*time.Second, tk)
	if got := testutil.MetricSum(t, tp.reg, "redis_carp_proxy_tracking_invalidations_total", "reason", "write"); got <= writes {
		t.Errorf("tracking_invalidations_total{reason=write} %v, was %v: the write was not reported", got, writes)
	}

	// The last monitor leaves: the nodes see its connections closed.
	mon.send("RESET")
	for { // monitor lines before its reply
		got := mon.mustRead()
		if got == "+RESET" {
			break
		}
		if !strings.HasPrefix(got, "+") || !strings.Contains(got, " [0 ") {
			t.Fatalf("RESET: %q", got)
		}
	}
	waitCounts("MONITOR connections closed", "O", monBefore, 0)
	if got := tp.srv.ServiceConns(); got != len(masters) {
		t.Errorf("%d service connections after the monitor left, want %d", got, len(masters))
	}
}

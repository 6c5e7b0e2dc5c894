package proxy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
)

// everyNode returns the cluster's masters and replicas.
func everyNode(t testing.TB, c *testcluster.Cluster) []*testcluster.Node {
	t.Helper()
	ctx := context.Background()
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	replicas, err := c.Replicas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return append(masters, replicas...)
}

// nodeConfig returns one setting of every node.
func nodeConfig(t testing.TB, c *testcluster.Cluster, nodes []*testcluster.Node, param string) []string {
	t.Helper()
	var out []string
	for _, n := range nodes {
		v, err := c.Client(n).ConfigGet(context.Background(), param).Result()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v[param])
	}
	return out
}

// waitReplicasListed waits until CLUSTER SLOTS lists every node (a fresh cluster lists
// its replicas a little after it reports ok), so that a proxy started next knows them all.
func waitReplicasListed(t testing.TB, c *testcluster.Cluster, nodes []*testcluster.Node) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, "CLUSTER SLOTS lists every node", func() bool {
		slots, err := c.Client(nodes[0]).ClusterSlots(context.Background()).Result()
		listed := 0
		for _, s := range slots {
			listed += len(s.Nodes)
		}
		return err == nil && listed == len(nodes)
	})
}

func TestAdminCommands(t *testing.T) {
	c := sharedCluster(t)
	ctx := context.Background()
	ref := startReference(t)
	nodes := everyNode(t, c)
	waitReplicasListed(t, c, nodes)
	listpack := nodeConfig(t, c, nodes, "hash-max-listpack-entries")[0]

	t.Run("disabled by default", func(t *testing.T) {
		p := startProxy(t, c, nil).client(t)
		for _, args := range [][]any{{"CONFIG", "SET", "hash-max-listpack-entries", "1"}, {"CONFIG", "RESETSTAT"}, {"CONFIG", "REWRITE"},
			{"CLIENT", "PAUSE", "100"}, {"CLIENT", "UNPAUSE"}, {"LATENCY", "RESET"}} {
			err := p.Do(ctx, args...).Err()
			want := fmt.Sprintf("ERR %s %s is disabled by the proxy (set enable-admin-commands yes)", args[0], args[1])
			if err == nil || err.Error() != want {
				t.Errorf("%v: %v, want %q", args, err, want)
			}
		}
		if v := nodeConfig(t, c, nodes, "hash-max-listpack-entries"); v[0] != listpack {
			t.Errorf("a refused CONFIG SET changed a node: %v", v)
		}
		// CONFIG GET needs no switch; SLOWLOG RESET still empties the proxy's own log.
		same(t, p, ref, "CONFIG", "GET", "hash-max-listpack-entries")
		sameSet(t, p, ref, "CONFIG", "GET", "zset-max-*")
		same(t, p, ref, "CONFIG", "GET", "no-such-setting")
		same(t, p, ref, "SLOWLOG", "RESET")
	})

	tp := startProxy(t, c, func(cfg *config.Config) { cfg.EnableAdminCommands = true })
	p := tp.client(t)
	restore := func(param, value string) {
		t.Cleanup(func() {
			for _, n := range nodes {
				c.Client(n).ConfigSet(context.Background(), param, value)
			}
		})
	}

	t.Run("CONFIG SET reaches every node and changes encodings", func(t *testing.T) {
		restore("hash-max-listpack-entries", listpack)
		restore("zset-max-listpack-entries", "128")
		same(t, p, ref, "CONFIG", "SET", "hash-max-listpack-entries", "1", "zset-max-listpack-entries", "2")
		for i, v := range nodeConfig(t, c, nodes, "hash-max-listpack-entries") {
			if v != "1" {
				t.Errorf("node %s: hash-max-listpack-entries %s", nodes[i].Addr, v)
			}
		}
		same(t, p, ref, "CONFIG", "GET", "hash-max-listpack-entries")
		same(t, p, ref, "CONFIG", "GET", "zset-max-listpack-entries")
		h := fmt.Sprintf("h%d", rand.Int())
		z := fmt.Sprintf("z%d", rand.Int())
		same(t, p, ref, "HSET", h, "a", "1", "b", "2")
		same(t, p, ref, "OBJECT", "ENCODING", h)
		same(t, p, ref, "ZADD", z, "1", "a", "2", "b")
		same(t, p, ref, "OBJECT", "ENCODING", z)
		same(t, p, ref, "ZADD", z, "3", "c")
		same(t, p, ref, "OBJECT", "ENCODING", z)
		same(t, p, ref, "CONFIG", "SET", "hash-max-listpack-entries", listpack, "zset-max-listpack-entries", "128")
		same(t, p, ref, "DEL", h, z)
	})

	t.Run("CONFIG SET errors are Redis's", func(t *testing.T) {
		for _, args := range [][]any{
			{"CONFIG", "SET", "no-such-setting", "1"},
			{"CONFIG", "SET", "hash-max-listpack-entries"},
			{"CONFIG", "SET", "hash-max-listpack-entries", "1", "zset-max-listpack-entries"},
			{"CONFIG", "SET", "maxclients", "99999999999"},
			{"CONFIG", "SET", "proto-max-bulk-len", "1k"},
			{"CONFIG", "SET", "hash-max-listpack-entries", "x"},
			{"CONFIG", "SET", "slowlog-max-len", "abc"},
			{"CONFIG", "SET", "maxclients", "0"},
			{"CONFIG", "SET", "timeout", "-1"},
			{"CONFIG", "SET", "slowlog-log-slower-than", "-5"},
			{"CONFIG", "SET", "slowlog-max-len", "1", "SLOWLOG-max-len", "2"},
			{"CONFIG", "SET", "hash-max-listpack-entries", "1", "hash-max-listpack-entries", "2"},
		} {
			same(t, p, ref, args...)
		}
		if v := nodeConfig(t, c, nodes, "hash-max-listpack-entries"); v[0] != listpack {
			t.Errorf("a refused CONFIG SET changed a node: %v", v)
		}
		// A node's own address is not the cluster's to change.
		if err := p.Do(ctx, "CONFIG", "SET", "port", "1").Err(); err == nil || !strings.Contains(err.Error(), "not supported by the proxy") {
			t.Errorf("CONFIG SET port: %v", err)
		}
	})

	t.Run("the proxy's own settings apply to the proxy", func(t *testing.T) {
		before := nodeConfig(t, c, nodes, "maxclients")
		same(t, p, ref, "CONFIG", "SET", "maxclients", "5000", "slowlog-max-len", "7")
		same(t, p, ref, "CONFIG", "GET", "maxclients")
		same(t, p, ref, "CONFIG", "GET", "slowlog-max-len")
		if got := tp.srv.Config(); got.MaxClients != 5000 || got.SlowlogMaxLen != 7 {
			t.Errorf("proxy config after CONFIG SET: maxclients %d slowlog-max-len %d", got.MaxClients, got.SlowlogMaxLen)
		}
		if after := nodeConfig(t, c, nodes, "maxclients"); strings.Join(after, ",") != strings.Join(before, ",") {
			t.Errorf("maxclients reached the nodes: %v -> %v", before, after)
		}
		// slowlog-log-slower-than: 0 logs everything, -1 nothing; the proxy's log honours it.
		same(t, p, ref, "CONFIG", "SET", "slowlog-log-slower-than", "0")
		same(t, p, ref, "SLOWLOG", "RESET")
		same(t, p, ref, "SET", "slowlog-key", "1")
		if n, _ := p.Do(ctx, "SLOWLOG", "LEN").Int(); n < 2 {
			t.Errorf("threshold 0: SLOWLOG LEN %d, want every command", n)
		}
		same(t, p, ref, "CONFIG", "SET", "slowlog-log-slower-than", "-1")
		same(t, p, ref, "CONFIG", "GET", "slowlog-log-slower-than")
		same(t, p, ref, "SLOWLOG", "RESET")
		same(t, p, ref, "SET", "slowlog-key", "2")
		same(t, p, ref, "GET", "slowlog-key")
		same(t, p, ref, "SLOWLOG", "LEN")
		same(t, p, ref, "CONFIG", "SET", "slowlog-log-slower-than", "10000", "timeout", "0")
		same(t, p, ref, "CONFIG", "GET", "slowlog-log-slower-than")
		same(t, p, ref, "DEL", "slowlog-key")
	})

	t.Run("CONFIG GET errors when masters disagree, naming them", func(t *testing.T) {
		masters, _ := c.Masters(ctx)
		restore("list-max-listpack-size", "-2")
		if err := c.Client(masters[1]).ConfigSet(ctx, "list-max-listpack-size", "5").Err(); err != nil {
			t.Fatal(err)
		}
		err := p.Do(ctx, "CONFIG", "GET", "list-max-listpack-size").Err()
		if err == nil || !strings.Contains(err.Error(), "masters disagree") || !strings.Contains(err.Error(), "'5' on "+masters[1].Addr) {
			t.Errorf("CONFIG GET with one master changed: %v", err)
		}
		same(t, p, ref, "CONFIG", "SET", "list-max-listpack-size", "-2")
		same(t, p, ref, "CONFIG", "GET", "list-max-listpack-size")
	})

	t.Run("CONFIG RESETSTAT and REWRITE on every node", func(t *testing.T) {
		for i := 0; i < 50; i++ {
			p.Get(ctx, fmt.Sprintf("resetstat%d", i))
		}
		same(t, p, ref, "CONFIG", "RESETSTAT")
		for _, n := range nodes {
			if v := nodeInfo(t, c, n, "stats")["total_commands_processed"]; len(v) > 2 {
				t.Errorf("node %s after RESETSTAT: total_commands_processed %s", n.Addr, v)
			}
		}
		// The nodes run with configuration files (the reference without one).
		if err := p.Do(ctx, "CONFIG", "REWRITE").Err(); err != nil {
			t.Errorf("CONFIG REWRITE: %v", err)
		}
	})

	t.Run("CLIENT PAUSE and UNPAUSE on every node", func(t *testing.T) {
		same(t, p, ref, "CLIENT", "PAUSE", "300", "WRITE")
		start := time.Now()
		if err := p.Set(ctx, "paused-key", "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Errorf("SET during CLIENT PAUSE WRITE took %v", d)
		}
		same(t, p, ref, "CLIENT", "PAUSE", "5000", "WRITE")
		same(t, p, ref, "CLIENT", "UNPAUSE")
		start = time.Now()
		p.Del(ctx, "paused-key")
		if d := time.Since(start); d > time.Second {
			t.Errorf("DEL after CLIENT UNPAUSE took %v", d)
		}
		same(t, p, ref, "CLIENT", "PAUSE", "abc")
		same(t, p, ref, "CLIENT", "PAUSE", "100", "SOMETIMES")
	})

	t.Run("LATENCY RESET and SLOWLOG RESET on every node", func(t *testing.T) {
		same(t, p, ref, "LATENCY", "RESET")
		n := nodes[0]
		restore("slowlog-log-slower-than", "10000")
		c.Client(n).ConfigSet(ctx, "slowlog-log-slower-than", "0")
		c.Client(n).Ping(ctx)
		before, err := c.Client(n).SlowLogGet(ctx, 1).Result()
		if err != nil || len(before) == 0 {
			t.Fatalf("node slowlog empty at threshold 0: %v", err)
		}
		same(t, p, ref, "SLOWLOG", "RESET")
		// Entry ids keep counting after a reset: whatever the node logged since (the
		// proxy's slot map refreshes, at threshold 0) has a higher id than the last one
		// before it, and nothing logged before it may remain.
		after, err := c.Client(n).SlowLogGet(ctx, 128).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range after {
			if e.ID <= before[0].ID {
				t.Errorf("node %s keeps slow log entry %d (%v) from before SLOWLOG RESET through the proxy", n.Addr, e.ID, e.Args)
			}
		}
	})
}

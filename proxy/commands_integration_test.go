package proxy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// Every family test runs against the shared 6-node cluster with keys on every master and
// compares the proxy's answers with a standalone redis-server given the same commands.

func TestMultiKeyCommandsMatchStandalone(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil).client(t)
	ref := startReference(t)
	keys := spreadKeys(t, c, 40)
	mset := []any{"MSET"}
	for i, k := range keys[:30] {
		mset = append(mset, k, fmt.Sprintf("v%d", i))
	}
	same(t, p, ref, mset...)
	// Request order, missing keys (nil) and duplicates preserved.
	mget := []any{"MGET"}
	for i := len(keys) - 1; i >= 0; i-- {
		mget = append(mget, keys[i])
	}
	mget = append(mget, keys[3], keys[3], "nokey")
	same(t, p, ref, mget...)
	ex := []any{"EXISTS"}
	for _, k := range keys {
		ex = append(ex, k, k)
	}
	same(t, p, ref, ex...)
	touch := append([]any{"TOUCH"}, ex[1:]...)
	same(t, p, ref, touch...)
	same(t, p, ref, "DEL", keys[0], keys[1], keys[2], keys[35], keys[0])
	same(t, p, ref, "UNLINK", keys[3], keys[4], keys[5], keys[36], keys[4])
	same(t, p, ref, mget...)
	same(t, p, ref, "MGET", keys[10]) // single key: unchanged path
	same(t, p, ref, "MSET", keys[0])  // wrong arity: the node's error, as Redis
	same(t, p, ref, "MSET", keys[0], "a", keys[0])
	same(t, p, ref, "DEL")
	// A large MGET over many slots.
	big := []any{"MGET"}
	for i := 0; i < 500; i++ {
		big = append(big, keys[i%len(keys)])
	}
	same(t, p, ref, big...)
	// A failing part: a wrong type on one key fails EXISTS? No: EXISTS never fails; but
	// MGET of a hash key returns nil for it, as Redis.
	same(t, p, ref, "HSET", keys[37], "f", "v")
	same(t, p, ref, "MGET", keys[37], keys[6], keys[7])
	// Container commands whose key follows the subcommand, on every master.
	for _, k := range keys[6:15] {
		same(t, p, ref, "OBJECT", "ENCODING", k)
		same(t, p, ref, "XADD", k+"x", "1-1", "f", "v")
		same(t, p, ref, "XGROUP", "CREATE", k+"x", "g", "0")
		same(t, p, ref, "XINFO", "GROUPS", k+"x")
	}
}

func TestSameSlotCommandsCrossSlotWithoutBackend(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil).client(t)
	ref := startReference(t)
	ctx := context.Background()
	tag := fmt.Sprintf("{ss%d}", rand.Int())
	a, b, d := tag+"a", tag+"b", tag+"d"
	// Same slot: full semantics, as a single Redis.
	for _, cmd := range [][]any{
		{"MSETNX", a, "1", b, "2"}, {"MSETNX", a, "x", d, "y"}, {"MGET", a, b, d},
		{"RENAME", a, d}, {"RENAMENX", d, b}, {"COPY", d, a}, {"GET", a},
		{"SADD", a + "s", "x", "y"}, {"SADD", b + "s", "y", "z"}, {"SMOVE", a + "s", b + "s", "x"},
		{"SUNIONSTORE", d + "s", a + "s", b + "s"}, {"SINTERCARD", "2", a + "s", b + "s"},
		{"SINTER", a + "s", b + "s"}, {"SDIFFSTORE", d + "s2", b + "s", a + "s"},
		{"RPUSH", a + "l", "1", "2", "3"}, {"LMOVE", a + "l", b + "l", "LEFT", "RIGHT"},
		{"RPOPLPUSH", a + "l", b + "l"}, {"LRANGE", b + "l", "0", "-1"}, {"LMPOP", "2", d + "l", a + "l", "LEFT"},
		{"ZADD", a + "z", "1", "m1", "2", "m2"}, {"ZADD", b + "z", "5", "m2"},
		{"ZUNIONSTORE", d + "z", "2", a + "z", b + "z"}, {"ZRANGE", d + "z", "0", "-1", "WITHSCORES"},
		{"ZINTERSTORE", d + "z2", "2", a + "z", b + "z", "WEIGHTS", "1", "2"}, {"ZUNION", "2", a + "z", b + "z"},
		{"ZMPOP", "2", a + "z", b + "z", "MIN"},
		{"PFADD", a + "h", "x", "y"}, {"PFADD", b + "h", "y", "z"}, {"PFMERGE", d + "h", a + "h", b + "h"}, {"PFCOUNT", d + "h"},
		{"SET", a + "bit", "ab"}, {"SET", b + "bit", "cd"}, {"BITOP", "XOR", d + "bit", a + "bit", b + "bit"}, {"GET", d + "bit"},
	} {
		same(t, p, ref, cmd...)
	}
	// Keys in different slots: CROSSSLOT from the proxy, no cluster node asked.
	x, y := fmt.Sprintf("cx%d", rand.Int()), fmt.Sprintf("cy%d", rand.Int())
	for command.KeySlot([]byte(x)) == command.KeySlot([]byte(y)) {
		y += "1"
	}
	nodes := c.Nodes
	before := sumOver(t, c, nodes, "errorstats", "errorstat_CROSSSLOT", "count")
	cross := [][]any{
		{"MSETNX", x, "1", y, "2"}, {"RENAME", x, y}, {"RENAMENX", x, y}, {"SMOVE", x, y, "m"},
		{"LMOVE", x, y, "LEFT", "LEFT"}, {"RPOPLPUSH", x, y}, {"SUNIONSTORE", x, y}, {"SINTERSTORE", x, y},
		{"SDIFF", x, y}, {"SINTERCARD", "2", x, y}, {"ZUNIONSTORE", x, "1", y}, {"ZINTERSTORE", x, "2", x, y},
		{"ZUNION", "2", x, y}, {"ZDIFF", "2", x, y}, {"LMPOP", "2", x, y, "LEFT"}, {"ZMPOP", "2", x, y, "MIN"},
		{"PFMERGE", x, y}, {"PFCOUNT", x, y}, {"COPY", x, y}, {"BITOP", "AND", x, x, y}, {"BLMOVE", x, y, "LEFT", "LEFT", "0"},
		{"BRPOPLPUSH", x, y, "0"}, {"BLPOP", x, y, "0"}, {"BZPOPMIN", x, y, "0"}, {"BLMPOP", "0", "2", x, y, "LEFT"},
		{"EVAL", "return 1", "2", x, y}, {"FCALL", "f", "2", x, y}, {"SORT", x, "STORE", y}, {"LCS", x, y},
		{"XREAD", "STREAMS", x, y, "0", "0"}, {"GEOSEARCHSTORE", x, y, "FROMLONLAT", "0", "0", "BYRADIUS", "1", "km"},
	}
	for _, cmd := range cross {
		err := p.Do(ctx, cmd...).Err()
		if err == nil || err.Error() != "CROSSSLOT Keys in request don't hash to the same slot" {
			t.Errorf("%v: got %v, want CROSSSLOT", cmd, err)
		}
	}
	if after := sumOver(t, c, nodes, "errorstats", "errorstat_CROSSSLOT", "count"); after != before {
		t.Errorf("cluster nodes answered %d CROSSSLOT errors: the proxy sent cross-slot commands to them", after-before)
	}
}

func TestKeylessCommandsFanOut(t *testing.T) {
	c := sharedCluster(t)
	tp := startProxy(t, c, nil)
	p := tp.client(t)
	ref := startReference(t)
	ctx := context.Background()
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys := spreadKeys(t, c, 60)
	prefix := keys[0][:strings.IndexByte(keys[0], ':')+1]
	for i, k := range keys {
		if i%3 == 0 {
			same(t, p, ref, "HSET", k, "f", i)
		} else {
			same(t, p, ref, "SET", k, i)
		}
	}
	t.Run("DBSIZE", func(t *testing.T) {
		sum := int64(0)
		for _, m := range masters {
			sum += c.Client(m).DBSize(ctx).Val()
		}
		if got := p.DBSize(ctx).Val(); got != sum {
			t.Errorf("DBSIZE = %d, masters hold %d", got, sum)
		}
	})
	t.Run("KEYS", func(t *testing.T) {
		sameSet(t, p, ref, "KEYS", prefix+"*")
		sameSet(t, p, ref, "KEYS", prefix+"1?")
	})
	t.Run("RANDOMKEY", func(t *testing.T) {
		if k, err := p.RandomKey(ctx).Result(); err != nil || k == "" {
			t.Errorf("RANDOMKEY = %q, %v", k, err)
		}
	})
	t.Run("SCAN", func(t *testing.T) {
		for _, opt := range [][]any{{"MATCH", prefix + "*", "COUNT", 7}, {"MATCH", prefix + "*", "TYPE", "hash"}, {"MATCH", prefix + "2*", "COUNT", 1000, "TYPE", "string"}} {
			var got []string
			var cursor uint64
			calls := 0
			for {
				args := append([]any{"SCAN", cursor}, opt...)
				res, err := p.Do(ctx, args...).Slice()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := fmt.Sscan(res[0].(string), &cursor); err != nil {
					t.Fatalf("cursor %q is not an unsigned integer", res[0])
				}
				for _, k := range res[1].([]any) {
					got = append(got, k.(string))
				}
				if calls++; cursor == 0 || calls > 10000 {
					break
				}
			}
			var want []string
			wantArgs := append([]any{"SCAN", 0}, opt...)
			for cur := "0"; ; {
				wantArgs[1] = cur
				res, err := ref.Do(ctx, wantArgs...).Slice()
				if err != nil {
					t.Fatal(err)
				}
				for _, k := range res[1].([]any) {
					want = append(want, k.(string))
				}
				if cur = res[0].(string); cur == "0" {
					break
				}
			}
			slices.Sort(got)
			got = slices.Compact(got)
			if !equalSets(got, want) {
				t.Errorf("SCAN %v: proxy saw %d keys, reference %d", opt, len(got), len(want))
			}
		}
		same(t, p, ref, "SCAN", "abc")
	})
	t.Run("INFO", func(t *testing.T) {
		info, err := p.Info(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"# Server", "# Clients", "# Stats", "# Keyspace", "redis_version:7", "connected_clients:"} {
			if !strings.Contains(info, s) {
				t.Errorf("INFO lacks %q", s)
			}
		}
		var sum int
		for _, m := range masters {
			sum += statField(nodeInfo(t, c, m, "keyspace")["db0"], "keys")
		}
		ks, _ := p.Info(ctx, "keyspace").Result()
		if !strings.Contains(ks, fmt.Sprintf("db0:keys=%d,", sum)) {
			t.Errorf("INFO keyspace = %q, masters hold %d keys", ks, sum)
		}
		px, _ := p.Info(ctx, "proxy").Result()
		if !strings.Contains(px, "slots_covered:16384") || !strings.Contains(px, fmt.Sprintf("masters:%d", len(masters))) {
			t.Errorf("INFO proxy = %q", px)
		}
	})
	t.Run("TIME and LASTSAVE", func(t *testing.T) {
		if tm, err := p.Time(ctx).Result(); err != nil || time.Since(tm).Abs() > time.Minute {
			t.Errorf("TIME = %v, %v", tm, err)
		}
		if v, err := p.LastSave(ctx).Result(); err != nil || v <= 0 {
			t.Errorf("LASTSAVE = %v, %v", v, err)
		}
	})
	t.Run("SCRIPT", func(t *testing.T) {
		body := fmt.Sprintf("return redis.call('GET', KEYS[1]) -- %d", rand.Int())
		sha := same(t, p, ref, "SCRIPT", "LOAD", body).val
		for _, m := range masters {
			if ok, _ := c.Client(m).ScriptExists(ctx, sha.(string)).Result(); !ok[0] {
				t.Errorf("script not loaded on master %s", m.Addr)
			}
		}
		same(t, p, ref, "SCRIPT", "EXISTS", sha, "0000000000000000000000000000000000000000")
		for _, k := range keys[:9] {
			same(t, p, ref, "EVALSHA", sha, 1, k)
		}
		same(t, p, ref, "SCRIPT", "KILL")
		same(t, p, ref, "SCRIPT", "FLUSH")
		same(t, p, ref, "SCRIPT", "EXISTS", sha)
		same(t, p, ref, "EVALSHA", sha, 1, keys[1])
	})
	t.Run("FUNCTION", func(t *testing.T) {
		lib := fmt.Sprintf("lib%d", rand.Int())
		code := "#!lua name=" + lib + "\nredis.register_function('getk_" + lib + "', function(keys, args) return redis.call('GET', keys[1]) end)\n" +
			"redis.register_function{function_name='rok_" + lib + "', callback=function(keys, args) return redis.call('GET', keys[1]) end, flags={'no-writes'}}"
		same(t, p, ref, "FUNCTION", "LOAD", code)
		same(t, p, ref, "FUNCTION", "LOAD", code) // already exists: the node's error
		for _, k := range keys[:9] {
			same(t, p, ref, "FCALL", "getk_"+lib, 1, k)
			same(t, p, ref, "FCALL_RO", "rok_"+lib, 1, k)
		}
		list, err := p.Do(ctx, "FUNCTION", "LIST", "LIBRARYNAME", lib).Slice()
		if err != nil || len(list) != 1 {
			t.Errorf("FUNCTION LIST = %v, %v", list, err)
		}
		same(t, p, ref, "FUNCTION", "DELETE", lib)
		same(t, p, ref, "FCALL", "getk_"+lib, 1, keys[0])
		same(t, p, ref, "FUNCTION", "LOAD", code)
		same(t, p, ref, "FUNCTION", "FLUSH")
		for _, m := range masters {
			if l, _ := c.Client(m).Do(ctx, "FUNCTION", "LIST").Slice(); len(l) != 0 {
				t.Errorf("FUNCTION FLUSH left %v on %s", l, m.Addr)
			}
		}
	})
	t.Run("unsupported", func(t *testing.T) {
		for _, cmd := range [][]any{{"CONFIG", "SET", "maxmemory", "1"}, {"CONFIG", "RESETSTAT"}} {
			if err := p.Do(ctx, cmd...).Err(); err == nil || !strings.HasSuffix(err.Error(), "is disabled by the proxy (set enable-admin-commands yes)") {
				t.Errorf("%v: %v", cmd, err)
			}
		}
		for _, cmd := range [][]any{{"REPLICAOF", "127.0.0.1", "1"},
			{"SLAVEOF", "NO", "ONE"}, {"SHUTDOWN"}, {"DEBUG", "SLEEP", "0"}, {"SYNC"}, {"PSYNC", "?", "-1"},
			{"CLUSTER", "ADDSLOTS", "1"}, {"CLUSTER", "FAILOVER"}, {"CLUSTER", "SETSLOT", "1", "STABLE"}, {"CLUSTER", "MEET", "127.0.0.1", "1"},
			{"CLUSTER", "FORGET", "x"}, {"CLUSTER", "RESET"}, {"SWAPDB", "0", "1"}, {"MOVE", "k", "1"}} {
			err := p.Do(ctx, cmd...).Err()
			if err == nil || !strings.HasPrefix(err.Error(), "ERR ") || !strings.HasSuffix(err.Error(), "not supported by the proxy") {
				t.Errorf("%v: %v", cmd, err)
			}
		}
		if v, err := p.Do(ctx, "CONFIG", "GET", "maxmemory").Slice(); err != nil || len(v) != 2 {
			t.Errorf("CONFIG GET = %v, %v", v, err)
		}
	})
	t.Run("FLUSHALL", func(t *testing.T) {
		for _, cmd := range []string{"FLUSHALL", "FLUSHDB"} {
			err := p.Do(ctx, cmd).Err()
			if err == nil || !strings.Contains(err.Error(), "disabled by the proxy (set enable-flushall yes)") {
				t.Errorf("%s with enable-flushall off: %v", cmd, err)
			}
		}
		if p.DBSize(ctx).Val() == 0 {
			t.Fatal("keys gone although FLUSHALL is disabled")
		}
		fp := startProxy(t, c, func(cfg *config.Config) { cfg.EnableFlushall = true }).client(t)
		same(t, fp, ref, "FLUSHDB")
		same(t, fp, ref, "DBSIZE")
		same(t, fp, ref, "SET", keys[0], "x")
		same(t, fp, ref, "FLUSHALL")
		same(t, fp, ref, "DBSIZE")
		for _, m := range masters {
			if n := c.Client(m).DBSize(ctx).Val(); n != 0 {
				t.Errorf("master %s still holds %d keys", m.Addr, n)
			}
		}
	})
}

func TestTransactions(t *testing.T) {
	c := sharedCluster(t)
	tp := startProxy(t, c, nil)
	p := tp.client(t)
	ref := startReference(t)
	ctx := context.Background()
	keys := spreadKeys(t, c, 30)
	// One connection each, so that MULTI … EXEC share it (go-redis Do uses a pool).
	pc, rc := p.Conn(), ref.Conn()
	defer pc.Close()
	defer rc.Close()
	for i, k := range keys[:9] { // transactions pinned to each master in turn
		tag := "{" + k + "}"
		for _, cmd := range [][]any{{"MULTI"}, {"SET", tag + "a", i}, {"INCR", tag + "a"}, {"RPUSH", tag + "l", "x"}, {"GET", tag + "a"},
			{"INCR", tag + "l"}, {"EXEC"}, {"GET", tag + "a"}} {
			same(t, pc, rc, cmd...)
		}
	}
	tag := "{" + keys[0] + "}"
	other := keys[1]
	for command.KeySlot([]byte(other)) == command.KeySlot([]byte(keys[0])) {
		other += "x"
	}
	// Queue-time errors abort the transaction; EXECABORT as Redis.
	for _, cmd := range [][]any{
		{"MULTI"}, {"SET", tag + "a", "1"}, {"SET", tag + "a"}, {"EXEC"},
		{"MULTI"}, {"SET", tag + "a", "1"}, {"NOSUCHCOMMAND", "x"}, {"EXEC"},
		{"MULTI"}, {"MULTI"}, {"WATCH", tag + "a"}, {"DISCARD"}, {"EXEC"}, {"DISCARD"},
		{"MULTI"}, {"GET", tag + "a"}, {"DISCARD"}, {"GET", tag + "a"},
	} {
		same(t, pc, rc, cmd...)
	}
	// Keys of another slot in the same transaction: CROSSSLOT, then EXECABORT (as a cluster node).
	for _, step := range []struct {
		cmd  []any
		want string
	}{{[]any{"MULTI"}, "OK"}, {[]any{"SET", tag + "a", "1"}, "QUEUED"}, {[]any{"SET", other, "1"}, "CROSSSLOT Keys in request don't hash to the same slot"},
		{[]any{"EXEC"}, "EXECABORT Transaction discarded because of previous errors."}} {
		got := do(ctx, pc, step.cmd...)
		if fmt.Sprint(got.val) != step.want && got.err != step.want {
			t.Errorf("%v = %+v, want %s", step.cmd, got, step.want)
		}
	}
	if v := p.Get(ctx, other).Err(); v != redis.Nil {
		t.Errorf("aborted transaction wrote %s: %v", other, v)
	}
	// WATCH: a change by another client makes EXEC return nil; UNWATCH forgets.
	wk := tag + "w"
	same(t, pc, rc, "SET", wk, "0")
	for _, withChange := range []bool{false, true} {
		same(t, pc, rc, "WATCH", wk)
		if withChange {
			p.Set(ctx, wk, "changed", 0)
			ref.Set(ctx, wk, "changed", 0)
		}
		for _, cmd := range [][]any{{"MULTI"}, {"INCR", wk + "n"}, {"EXEC"}} {
			same(t, pc, rc, cmd...)
		}
	}
	same(t, pc, rc, "WATCH", wk)
	p.Set(ctx, wk, "changed2", 0)
	ref.Set(ctx, wk, "changed2", 0)
	for _, cmd := range [][]any{{"UNWATCH"}, {"MULTI"}, {"INCR", wk + "n"}, {"EXEC"}} {
		same(t, pc, rc, cmd...)
	}
	// WATCH of keys in two slots.
	if err := pc.Do(ctx, "WATCH", tag+"a", other).Err(); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
		t.Errorf("WATCH across slots: %v", err)
	}
	// go-redis optimistic locking helper, through the proxy.
	incr := func(tx *redis.Tx) error {
		n, err := tx.Get(ctx, wk+"n").Int()
		if err != nil && err != redis.Nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Set(ctx, wk+"n", n+10, 0)
			return nil
		})
		return err
	}
	if err := p.Watch(ctx, incr, wk+"n"); err != nil {
		t.Fatal(err)
	}
	if v, _ := p.Get(ctx, wk+"n").Int(); v != 12 {
		t.Errorf("after Watch helper: %d, want 12", v)
	}
	// The transaction ran on the slot owner: its keys are there.
	owner, err := c.OwnerOf(ctx, command.KeySlot([]byte(wk)))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Client(owner).Get(ctx, wk+"n").Int(); v != 12 {
		t.Errorf("slot owner %s has %d", owner.Addr, v)
	}
}

func TestBlockingCommandsReleasedByPush(t *testing.T) {
	c := sharedCluster(t)
	tp := startProxy(t, c, func(cfg *config.Config) { cfg.BlockingConnections = 4; cfg.TryagainRetries = 1 })
	p := tp.client(t, func(o *redis.Options) { o.PoolSize = 16 })
	ctx := context.Background()
	keys := spreadKeys(t, c, 24)
	k := func(i int) string { return keys[i] }
	tag := func(i int, s string) string { return "{" + keys[i] + "}" + s }
	p.XGroupCreateMkStream(ctx, k(10), "g", "$")
	cases := []struct {
		name  string
		block []any
		push  []any
		want  string
	}{
		{"BLPOP", []any{"BLPOP", tag(0, "x"), tag(0, "y"), 0}, []any{"RPUSH", tag(0, "y"), "a"}, "[" + tag(0, "y") + " a]"},
		{"BRPOP", []any{"BRPOP", k(2), 5}, []any{"RPUSH", k(2), "a", "b"}, "[" + k(2) + " b]"},
		{"BLMOVE", []any{"BLMOVE", tag(3, "s"), tag(3, "d"), "LEFT", "RIGHT", 0}, []any{"RPUSH", tag(3, "s"), "m"}, "m"},
		{"BRPOPLPUSH", []any{"BRPOPLPUSH", tag(4, "s"), tag(4, "d"), 0}, []any{"RPUSH", tag(4, "s"), "n"}, "n"},
		{"BLMPOP", []any{"BLMPOP", 0, 2, tag(5, "a"), tag(5, "b"), "LEFT"}, []any{"RPUSH", tag(5, "b"), "o"}, "[" + tag(5, "b") + " [o]]"},
		{"BZPOPMIN", []any{"BZPOPMIN", k(6), 0}, []any{"ZADD", k(6), 1, "z"}, "[" + k(6) + " z 1]"},
		{"BZPOPMAX", []any{"BZPOPMAX", k(7), 0}, []any{"ZADD", k(7), 1, "y", 2, "x"}, "[" + k(7) + " x 2]"},
		{"BZMPOP", []any{"BZMPOP", 0, 1, k(8), "MAX"}, []any{"ZADD", k(8), 3, "w"}, "[" + k(8) + " [[w 3]]]"},
		{"XREAD", []any{"XREAD", "BLOCK", 0, "STREAMS", k(9), "$"}, []any{"XADD", k(9), "1-1", "f", "v"}, "[[" + k(9) + " [[1-1 [f v]]]]]"},
		{"XREADGROUP", []any{"XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", k(10), ">"}, []any{"XADD", k(10), "2-1", "f", "v"}, "[[" + k(10) + " [[2-1 [f v]]]]]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := make(chan string, 1)
			go func() {
				v, err := p.Do(ctx, tc.block...).Result()
				res <- fmt.Sprintf("%v %v", v, err)
			}()
			// The pushing command may overtake the blocking one; push until released.
			deadline := time.Now().Add(10 * time.Second)
			waitBlocked(t, c, 1)
			if err := p.Do(ctx, tc.push...).Err(); err != nil {
				t.Fatal(err)
			}
			select {
			case got := <-res:
				if got != tc.want+" <nil>" {
					t.Errorf("got %s, want %s", got, tc.want)
				}
			case <-time.After(time.Until(deadline)):
				t.Fatal("not released by the push")
			}
		})
	}
	t.Run("timeout honoured", func(t *testing.T) {
		start := time.Now()
		v, err := p.Do(ctx, "BLPOP", k(11)+"none", "0.3").Result()
		if err != redis.Nil || v != nil {
			t.Errorf("BLPOP timeout: %v %v", v, err)
		}
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Errorf("BLPOP returned after %v, before its timeout", d)
		}
	})
	t.Run("WAIT", func(t *testing.T) {
		conn := p.Conn()
		defer conn.Close()
		for _, key := range keys[:9] {
			conn.Set(ctx, key, "w", 0)
		}
		n, err := conn.Do(ctx, "WAIT", 1, 5000).Int()
		if err != nil || n != 1 {
			t.Errorf("WAIT 1 5000 = %d, %v (every master has one replica)", n, err)
		}
		if err := conn.Do(ctx, "WAIT", 1, -1).Err(); err == nil || err.Error() != "ERR timeout is negative" {
			t.Errorf("WAIT 1 -1: %v", err)
		}
	})
	t.Run("blocking-connections limit", func(t *testing.T) {
		res := make(chan error, 4)
		for i := 0; i < 4; i++ {
			go func() { res <- p.Do(ctx, "BLPOP", k(13), 0).Err() }()
		}
		waitBlocked(t, c, 4)
		err := p.Do(ctx, "BLPOP", k(14), 0).Err()
		if err == nil || !strings.Contains(err.Error(), "all 4 blocking-connections are in use") {
			t.Errorf("5th blocking command: %v", err)
		}
		if err := p.Do(ctx, "RPUSH", k(13), 1, 2, 3, 4).Err(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			if err := <-res; err != nil {
				t.Error(err)
			}
		}
	})
	t.Run("disconnect frees the connection", func(t *testing.T) {
		for i := 0; i < 6; i++ { // more than blocking-connections: leaks would exhaust it
			r := dialRaw(t, tp.addr)
			r.send(fmt.Sprintf("*3\r\n$5\r\nBLPOP\r\n$%d\r\n%s\r\n$1\r\n0\r\n", len(k(12)), k(12)))
			waitBlocked(t, c, 1)
			r.c.Close()
			waitBlocked(t, c, 0)
		}
		if v, err := p.Do(ctx, "BLPOP", k(12), "0.1").Result(); err != redis.Nil {
			t.Errorf("BLPOP after disconnects: %v %v", v, err)
		}
	})
}

// waitBlocked waits until the cluster's nodes have n blocked clients in total.
func waitBlocked(t *testing.T, c *testcluster.Cluster, n int) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("%d blocked clients", n), func() bool {
		total := 0
		for _, node := range c.Nodes {
			v := nodeInfo(t, c, node, "clients")["blocked_clients"]
			var x int
			fmt.Sscan(v, &x)
			total += x
		}
		return total == n
	})
}

// Like Redis, client-idle-timeout closes idle clients but not blocked or subscribed ones.
func TestIdleTimeoutSparesBlockedAndSubscribed(t *testing.T) {
	c := sharedCluster(t)
	tp := startProxy(t, c, func(cfg *config.Config) { cfg.ClientIdleTimeout = 300 * time.Millisecond })
	ch := fmt.Sprintf("idle%d", rand.Int())
	blocked, sub, idle := dialRaw(t, tp.addr), dialRaw(t, tp.addr), dialRaw(t, tp.addr)
	exchange(t, sub, "SUBSCRIBE "+ch+"\r\n", 6)
	blocked.send("BLPOP " + ch + "list 1.2\r\n")
	if got := blocked.line(); got != "*-1" {
		t.Errorf("BLPOP with a timeout longer than client-idle-timeout: %q", got)
	}
	idle.expectClosed()
	if err := c.Client(c.Nodes[0]).Publish(context.Background(), ch, "still here").Err(); err != nil {
		t.Fatal(err)
	}
	if got := exchange(t, sub, "", 7); got[6] != "still here" {
		t.Errorf("subscriber after %v idle: %q", 1200*time.Millisecond, got)
	}
	// Once the blocking command is answered, the idle timeout applies again.
	blocked.expectClosed()
}

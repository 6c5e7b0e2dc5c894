package proxy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
)

// infoHeaders returns the section titles of an INFO reply, in order.
func infoHeaders(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\r\n") {
		if strings.HasPrefix(l, "# ") {
			out = append(out, strings.TrimPrefix(l, "# "))
		}
	}
	return out
}

func infoFields(text string) map[string]string {
	kv := map[string]string{}
	for _, l := range strings.Split(text, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, "#") {
			kv[k] = v
		}
	}
	return kv
}

func TestInfoMerged(t *testing.T) {
	c := sharedCluster(t)
	ctx := context.Background()
	tp := startProxy(t, c, nil)
	p := tp.client(t)
	ref := startReference(t)
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("sections as Redis", func(t *testing.T) {
		for _, args := range [][]string{nil, {"default"}, {"all"}, {"everything"}, {"server", "clients"}, {"cpu"},
			{"commandstats"}, {"errorstats", "keyspace"}, {"CPU", "Memory"}, {"modules"}, {"nosuch"}} {
			got, err1 := p.Info(ctx, args...).Result()
			want, err2 := ref.Info(ctx, args...).Result()
			if err1 != nil || err2 != nil {
				t.Fatalf("INFO %v: %v / %v", args, err1, err2)
			}
			g := strings.Join(infoHeaders(got), ",")
			w := strings.Join(infoHeaders(want), ",")
			if all := len(args) == 0 || args[0] == "default" || args[0] == "all" || args[0] == "everything"; all {
				w += ",Proxy"
			}
			if g != w {
				t.Errorf("INFO %v sections:\n proxy:     %s\n reference: %s", args, g, w)
			}
			if len(args) == 1 && args[0] == "nosuch" && got != want {
				t.Errorf("INFO nosuch: %q, want %q", got, want)
			}
		}
		// Every field of the reference's clients and cpu sections (but the main-thread CPU
		// times, which a Go process does not have) is there.
		got := infoFields(p.Info(ctx, "everything").Val())
		for k := range infoFields(ref.Info(ctx, "clients", "cpu").Val()) {
			if _, ok := got[k]; !ok && !strings.HasSuffix(k, "_main_thread") {
				t.Errorf("INFO lacks %s", k)
			}
		}
		for _, k := range []string{"used_cpu_sys", "used_cpu_user"} {
			if _, err := strconv.ParseFloat(got[k], 64); err != nil {
				t.Errorf("%s: %q", k, got[k])
			}
		}
		node := nodeInfo(t, c, masters[0], "server")
		if got["redis_version"] != node["redis_version"] || got["redis_mode"] != "standalone" || got["tcp_port"] != tp.addr[strings.LastIndexByte(tp.addr, ':')+1:] {
			t.Errorf("server: redis_version %q (node %q), redis_mode %q, tcp_port %q", got["redis_version"], node["redis_version"], got["redis_mode"], got["tcp_port"])
		}
		if got["cluster_enabled"] != "0" || got["role"] != "master" {
			t.Errorf("cluster_enabled %q, role %q", got["cluster_enabled"], got["role"])
		}
	})

	t.Run("stats and commandstats summed over masters", func(t *testing.T) {
		keys := keysOnDistinctMasters(t, c, fmt.Sprintf("info%d:", rand.Int()))
		for _, k := range keys {
			same(t, p, ref, "SET", k, "v")
		}
		before := [2]map[string]string{infoFields(p.Info(ctx, "stats", "commandstats").Val()), infoFields(ref.Info(ctx, "stats", "commandstats").Val())}
		for _, k := range keys {
			same(t, p, ref, "GET", k)
			same(t, p, ref, "GET", k+"-missing")
		}
		same(t, p, ref, "HGET", keys[0], "f") // WRONGTYPE: errorstats
		after := [2]map[string]string{infoFields(p.Info(ctx, "stats", "commandstats", "errorstats").Val()), infoFields(ref.Info(ctx, "stats", "commandstats", "errorstats").Val())}
		delta := func(i int, k, field string) int {
			if field == "" {
				a, _ := strconv.Atoi(after[i][k])
				b, _ := strconv.Atoi(before[i][k])
				return a - b
			}
			return statField(after[i][k], field) - statField(before[i][k], field)
		}
		for _, f := range [][2]string{{"keyspace_hits", ""}, {"keyspace_misses", ""}, {"cmdstat_get", "calls"}, {"cmdstat_hget", "failed_calls"}, {"errorstat_WRONGTYPE", "count"}} {
			if g, w := delta(0, f[0], f[1]), delta(1, f[0], f[1]); g != w {
				t.Errorf("%s %s went up by %d through the proxy, %d on one Redis", f[0], f[1], g, w)
			}
		}
		for _, k := range keys {
			p.Del(ctx, k)
			ref.Del(ctx, k)
		}
	})

	t.Run("keyspace and memory summed over masters", func(t *testing.T) {
		keys := keysOnDistinctMasters(t, c, fmt.Sprintf("ks%d:", rand.Int()))
		for _, k := range keys {
			p.Set(ctx, k, "v", time.Hour)
		}
		defer p.Del(ctx, keys...)
		n, _ := p.DBSize(ctx).Result()
		got := infoFields(p.Info(ctx, "keyspace", "memory").Val())
		if statField(got["db0"], "keys") != int(n) || statField(got["db0"], "expires") < len(keys) {
			t.Errorf("db0 %q, DBSIZE %d", got["db0"], n)
		}
		used, _ := strconv.ParseInt(got["used_memory"], 10, 64)
		one, _ := strconv.ParseInt(nodeInfo(t, c, masters[0], "memory")["used_memory"], 10, 64)
		if used < 2*one || !strings.HasSuffix(got["used_memory_human"], "M") {
			t.Errorf("used_memory %d (one master %d), human %q", used, one, got["used_memory_human"])
		}
	})

	t.Run("blocked_clients", func(t *testing.T) {
		list := fmt.Sprintf("blocked%d", rand.Int())
		blocker := tp.client(t)
		done := make(chan error, 1)
		go func() { done <- blocker.BLPop(ctx, 10*time.Second, list).Err() }()
		field := func() string { return infoFields(p.Info(ctx, "clients").Val())["blocked_clients"] }
		testutil.WaitFor(t, 5*time.Second, "blocked_clients:1", func() bool { return field() == "1" })
		p.RPush(ctx, list, "x")
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 5*time.Second, "blocked_clients:0", func() bool { return field() == "0" })
	})
}

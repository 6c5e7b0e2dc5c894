package proxy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// TestSlowlogNamesServingNode checks SLOWLOG GET/LEN/RESET: entries carry the end-to-end
// command, the client and the node that served it, and AUTH passwords are redacted.
func TestSlowlogNamesServingNode(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, func(cfg *config.Config) {
		cfg.SlowlogSlowerThan = 0 // every command
		cfg.SlowlogMaxLen = 4
		cfg.RequirePass = "slowlog-secret-pw"
	})
	ctx := context.Background()
	cl := p.client(t, func(o *redis.Options) { o.Password = "slowlog-secret-pw"; o.PoolSize = 1 })
	key := fmt.Sprintf("slow%d", rand.Int())
	if err := cl.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Do(ctx, "SLOWLOG", "RESET").Err(); err != nil {
		t.Fatal(err)
	}
	// RESET itself finishes after the log was emptied, so it is the only entry.
	if n, err := cl.Do(ctx, "SLOWLOG", "LEN").Int64(); err != nil || n != 1 {
		t.Fatalf("SLOWLOG LEN after RESET = %d, %v; want 1 (the RESET)", n, err)
	}
	if err := cl.Do(ctx, "AUTH", "slowlog-secret-pw").Err(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Get(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	entries, err := cl.Do(ctx, "PROXY", "SLOWLOG", "2").Slice() // SLOWLOG GET with the node
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("SLOWLOG GET 2 returned %d entries", len(entries))
	}
	owner, err := c.OwnerOf(ctx, command.KeySlot([]byte(key)))
	if err != nil {
		t.Fatal(err)
	}
	get := entries[0].([]any) // newest first
	if len(get) != 7 {
		t.Fatalf("entry has %d fields, want 7: %v", len(get), get)
	}
	if args := fmt.Sprint(get[3]); !strings.EqualFold(args, fmt.Sprintf("[GET %s]", key)) {
		t.Errorf("GET entry args = %s", args)
	}
	if d, ok := get[2].(int64); !ok || d < 0 {
		t.Errorf("duration field %v", get[2])
	}
	if !strings.HasPrefix(fmt.Sprint(get[4]), "127.0.0.1:") {
		t.Errorf("client field %v", get[4])
	}
	if get[6] != owner.Addr {
		t.Errorf("GET served by %v, slot owner is %s", get[6], owner.Addr)
	}
	auth := entries[1].([]any)
	if args := fmt.Sprint(auth[3]); !strings.EqualFold(args, "[AUTH (redacted)]") {
		t.Errorf("AUTH entry args = %s, want the password redacted", args)
	}
	if auth[6] != "" {
		t.Errorf("AUTH (answered by the proxy) names node %v", auth[6])
	}
	// slowlog-max-len bounds the log.
	for i := 0; i < 10; i++ {
		cl.Get(ctx, key)
	}
	if n, err := cl.Do(ctx, "SLOWLOG", "LEN").Int64(); err != nil || n != 4 {
		t.Fatalf("SLOWLOG LEN = %d, %v; want slowlog-max-len 4", n, err)
	}
	if err := cl.Do(ctx, "SLOWLOG", "GET", "x").Err(); err == nil || !strings.Contains(err.Error(), "count should be") {
		t.Errorf("SLOWLOG GET x: %v", err)
	}
}

// TestHotKeysCommand checks PROXY HOTKEYS reports the hottest keys in order.
func TestHotKeysCommand(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, func(cfg *config.Config) { cfg.HotkeysSampleRate = 1 })
	ctx := context.Background()
	cl := p.client(t)
	prefix := fmt.Sprintf("hk%d", rand.Int())
	hot, warm := prefix+":hot", prefix+":warm"
	pipe := cl.Pipeline()
	for i := 0; i < 300; i++ {
		pipe.Get(ctx, hot)
		if i%3 == 0 {
			pipe.Get(ctx, warm)
		}
		pipe.Get(ctx, fmt.Sprintf("%s:cold%d", prefix, i))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	top, err := cl.Do(ctx, "PROXY", "HOTKEYS", "2").StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	if len(top) != 4 || top[0] != hot || top[2] != warm {
		t.Fatalf("PROXY HOTKEYS 2 = %q, want %s then %s with rates", top, hot, warm)
	}
	if p.srv.HotKeys(1)[0].Key != hot {
		t.Fatalf("Server.HotKeys(1) = %v", p.srv.HotKeys(1))
	}
	if err := cl.Do(ctx, "PROXY", "HOTKEYS", "0").Err(); err == nil {
		t.Error("PROXY HOTKEYS 0 accepted")
	}
}

// TestInfoProxySection checks the INFO proxy section: version, uptime, CARP state and the
// active flag from the host state function, slot map epoch and coverage, and every node.
func TestInfoProxySection(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	ctx := context.Background()
	cl := p.client(t)
	info, err := cl.Info(ctx, "proxy").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# Proxy\r\n", "proxy_version:" + proxy.Version + "\r\n", "uptime_in_seconds:", "carp_state:static\r\n", "active:1\r\n",
		"slotmap_epoch:", "slots_covered:16384\r\n", "masters:3\r\n"} {
		if !strings.Contains(info, want) {
			t.Errorf("INFO proxy lacks %q:\n%s", want, info)
		}
	}
	// Replicas are listed too when CLUSTER SLOTS reports them (Redis omits a replica until
	// it has a replication offset), so only the masters are checked here.
	masters, _ := c.Masters(ctx)
	for _, n := range masters {
		if !strings.Contains(info, "addr="+n.Addr+",role=master,state=up,slots=") {
			t.Errorf("INFO proxy lacks master %s:\n%s", n.Addr, info)
		}
	}
	p.srv.SetHostState(func() proxy.HostState { return proxy.HostState{CARP: "BACKUP", Active: false} })
	info, _ = cl.Do(ctx, "PROXY", "INFO").Text()
	if !strings.Contains(info, "carp_state:BACKUP\r\nactive:0\r\n") {
		t.Errorf("PROXY INFO after SetHostState(BACKUP):\n%s", info)
	}
	if ok, why := p.srv.Ready(); ok || !strings.Contains(why, "not active") {
		t.Errorf("Ready while BACKUP = %v, %q", ok, why)
	}
	p.srv.SetHostState(nil)
	if ok, why := p.srv.Ready(); !ok {
		t.Errorf("Ready with the default host state = %v, %q", ok, why)
	}
}

// TestCommandLabelsBounded floods the proxy with random command names and checks that
// they all end up under command="other": a client cannot grow the metrics' cardinality.
func TestCommandLabelsBounded(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	ctx := context.Background()
	cl := p.client(t, func(o *redis.Options) { o.PoolSize = 1 })
	if err := cl.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	count := func() (series int, other float64, labels map[string]bool) {
		mfs, err := p.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		labels = map[string]bool{}
		for _, mf := range mfs {
			switch mf.GetName() {
			case "redis_carp_proxy_commands_total", "redis_carp_proxy_command_duration_seconds":
				for _, m := range mf.GetMetric() {
					series++
					var cmd, result string
					for _, lp := range m.GetLabel() {
						switch lp.GetName() {
						case "command":
							cmd = lp.GetValue()
						case "result":
							result = lp.GetValue()
						}
					}
					labels[cmd] = true
					if mf.GetName() == "redis_carp_proxy_commands_total" && cmd == "other" && result == "error" {
						other = m.GetCounter().GetValue()
					}
				}
			}
		}
		return series, other, labels
	}
	cl.Do(ctx, "NOSUCHCOMMAND") // creates the other/error series
	before, otherBefore, _ := count()
	const flood = 500
	pipe := cl.Pipeline()
	for i := 0; i < flood; i++ {
		pipe.Do(ctx, fmt.Sprintf("x%016x", rand.Uint64()), "arg")
	}
	pipe.Exec(ctx)
	after, otherAfter, labels := count()
	if after != before {
		t.Errorf("%d command series before %d random command names, %d after", before, flood, after)
	}
	if otherAfter-otherBefore != flood {
		t.Errorf("commands_total{command=other,result=error} grew by %v, want %d", otherAfter-otherBefore, flood)
	}
	for l := range labels {
		if strings.HasPrefix(l, "x") && len(l) == 17 {
			t.Errorf("random command name %q became a label value", l)
		}
	}
}

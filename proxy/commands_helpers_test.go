package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// startReference starts a standalone redis-server: the single Redis whose answers the
// proxy's must match.
func startReference(t testing.TB) *redis.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Skipf("redis-server not available: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	cl := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), MaxRetries: -1, DisableIdentity: true, ReadTimeout: 10 * time.Second, Protocol: 2})
	t.Cleanup(func() { cl.Close() })
	for i := 0; ; i++ {
		if err := cl.Ping(context.Background()).Err(); err == nil {
			break
		} else if i > 100 {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("reference redis-server not answering: %v\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cl
}

// doer is a go-redis client or connection.
type doer interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// result is a command's outcome in comparable form.
type result struct {
	val any
	err string
}

func do(ctx context.Context, cl doer, args ...any) result {
	v, err := cl.Do(ctx, args...).Result()
	if errors.Is(err, redis.Nil) {
		return result{val: nil}
	}
	if err != nil {
		return result{err: err.Error()}
	}
	return result{val: v}
}

// same runs args on the proxy and on the reference and fails the test if the answers differ.
func same(t testing.TB, p, ref doer, args ...any) result {
	t.Helper()
	ctx := context.Background()
	got, want := do(ctx, p, args...), do(ctx, ref, args...)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%v:\n proxy:     %#v\n reference: %#v", args, got, want)
	}
	return got
}

// sameSet is same for replies whose order is unspecified (KEYS, SMEMBERS …).
func sameSet(t testing.TB, p, ref doer, args ...any) {
	t.Helper()
	ctx := context.Background()
	got, err1 := p.Do(ctx, args...).StringSlice()
	want, err2 := ref.Do(ctx, args...).StringSlice()
	if fmt.Sprint(err1) != fmt.Sprint(err2) || !equalSets(got, want) {
		t.Errorf("%v:\n proxy:     %v %v\n reference: %v %v", args, got, err1, want, err2)
	}
}

func equalSets(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}

// slotOwners maps every slot to its master's address, as the cluster reports it.
func slotOwners(t testing.TB, c *testcluster.Cluster) map[int]string {
	t.Helper()
	ctx := context.Background()
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slots, err := c.Client(masters[0]).ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	own := map[int]string{}
	for _, r := range slots {
		for s := r.Start; s <= r.End; s++ {
			own[s] = r.Nodes[0].Addr
		}
	}
	return own
}

// spreadKeys returns n keys with a fresh prefix that land on every master.
func spreadKeys(t testing.TB, c *testcluster.Cluster, n int) []string {
	t.Helper()
	own := slotOwners(t, c)
	prefix := fmt.Sprintf("k%d:", rand.Int())
	keys := make([]string, n)
	seen := map[string]bool{}
	for i := range keys {
		keys[i] = prefix + strconv.Itoa(i)
		seen[own[command.KeySlot([]byte(keys[i]))]] = true
	}
	masters, _ := c.Masters(context.Background())
	if len(seen) != len(masters) {
		t.Fatalf("%d keys reach %d of %d masters; use more keys", n, len(seen), len(masters))
	}
	return keys
}

// nodeInfo returns INFO section as key/value pairs from one node.
func nodeInfo(t testing.TB, c *testcluster.Cluster, n *testcluster.Node, section string) map[string]string {
	t.Helper()
	s, err := c.Client(n).Info(context.Background(), section).Result()
	if err != nil {
		t.Fatal(err)
	}
	kv := map[string]string{}
	for _, l := range strings.Split(s, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, "#") {
			kv[k] = v
		}
	}
	return kv
}

// statField extracts field from an INFO value like "calls=3,usec=5,…" or "count=2".
func statField(v, field string) int {
	for _, f := range strings.Split(v, ",") {
		if k, x, ok := strings.Cut(f, "="); ok && k == field {
			n, _ := strconv.Atoi(x)
			return n
		}
	}
	return 0
}

// sumOver adds one INFO stat over nodes.
func sumOver(t testing.TB, c *testcluster.Cluster, nodes []*testcluster.Node, section, key, field string) int {
	total := 0
	for _, n := range nodes {
		total += statField(nodeInfo(t, c, n, section)[key], field)
	}
	return total
}

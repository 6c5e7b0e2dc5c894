package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// An incomplete slot map from the cluster never replaces the last complete one: the proxy
// keeps serving every other slot, and picks the full map up again once the cluster has it.
func TestIncompleteSlotMapKeepsLastGood(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{ExtraConfig: []string{"cluster-require-full-coverage no"}})
	p := startProxy(t, c, func(cfg *config.Config) { cfg.SlotmapRefresh = 100 * time.Millisecond })
	ctx := context.Background()
	cl := p.client(t)

	const lost = 100 // a slot the cluster will stop serving
	owner, err := c.OwnerOf(ctx, lost)
	if err != nil {
		t.Fatal(err)
	}
	ownerID, err := c.Client(owner).Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	epoch := testutil.MetricSum(t, p.reg, "redis_carp_proxy_slotmap_epoch")
	failedBefore := testutil.MetricSum(t, p.reg, "redis_carp_proxy_slotmap_refreshes_total", "result", "error")
	for _, n := range c.Nodes {
		if err := c.Client(n).Do(ctx, "CLUSTER", "DELSLOTS", lost).Err(); err != nil {
			t.Fatalf("DELSLOTS on %s: %v", n.Addr, err)
		}
	}
	// Several periodic refreshes now see 16383 slots and must all be refused.
	deadline := time.Now().Add(10 * time.Second)
	for testutil.MetricSum(t, p.reg, "redis_carp_proxy_slotmap_refreshes_total", "result", "error") < failedBefore+3 {
		if time.Now().After(deadline) {
			t.Fatal("no refused refresh within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := testutil.MetricSum(t, p.reg, "redis_carp_proxy_slotmap_epoch"); got != epoch {
		t.Fatalf("slot map epoch moved from %v to %v: an incomplete map was accepted", epoch, got)
	}
	// The proxy serves on with the last good map, but reports the cluster's coverage and is
	// not ready (/readyz is 200 only while the cluster covers every slot).
	if ok, why := p.srv.Ready(); ok || !strings.Contains(why, "the cluster serves 16383 of 16384 slots") {
		t.Fatalf("Ready with 16383 slots served = %v, %q; want not ready, naming the coverage", ok, why)
	}
	if got := testutil.MetricSum(t, p.reg, "redis_carp_proxy_slotmap_slots_covered"); got != 16383 {
		t.Fatalf("slotmap_slots_covered = %v, want 16383", got)
	}
	for i := 0; i < 200; i++ {
		k := fmt.Sprintf("cov%d", i)
		if command.KeySlot([]byte(k)) == lost {
			continue
		}
		if err := cl.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatalf("SET %s while slot %d is unassigned: %v", k, lost, err)
		}
	}

	// Give the slot back: the next refresh accepts the complete map again.
	if err := c.Client(owner).Do(ctx, "CLUSTER", "ADDSLOTS", lost).Err(); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		if n != owner {
			c.Client(n).Do(ctx, "CLUSTER", "SETSLOT", lost, "NODE", ownerID)
		}
	}
	deadline = time.Now().Add(10 * time.Second)
	for testutil.MetricSum(t, p.reg, "redis_carp_proxy_slotmap_epoch") == epoch {
		if time.Now().After(deadline) {
			t.Fatal("complete map not accepted again within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ok, why := p.srv.Ready(); !ok {
		t.Fatalf("not ready after the slot came back: %s", why)
	}
}

// A slot caught half-way through a migration: keys already moved are answered by the target
// through ASK (ASKING + the command on the same connection), keys not yet moved by the
// source, new keys are created on the target; the proxy's slot map is not changed by ASK.
func TestAskRedirection(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	p := startProxy(t, c, nil)
	ctx := context.Background()
	cl := p.client(t)

	const movedKey, stayingKey, newKey = "{ask}moved", "{ask}staying", "{ask}new"
	slot := command.KeySlot([]byte(movedKey))
	for _, k := range []string{movedKey, stayingKey} {
		if err := cl.Set(ctx, k, "v-"+k, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	from, to, err := c.OwnerAndOther(ctx, slot)
	if err != nil {
		t.Fatal(err)
	}
	fromID, toID := nodeID(t, c, from), nodeID(t, c, to)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Client(to).Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID).Err())
	must(c.Client(from).Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID).Err())
	must(c.Client(from).Do(ctx, "MIGRATE", "127.0.0.1", to.Port, "", 0, 5000, "KEYS", movedKey).Err())
	epoch := testutil.MetricSum(t, p.reg, "redis_carp_proxy_slotmap_epoch")
	asks := func() float64 {
		return testutil.MetricSum(t, p.reg, "redis_carp_proxy_redirections_total", "type", "ask")
	}

	for _, k := range []string{movedKey, stayingKey} {
		before := asks()
		v, err := cl.Get(ctx, k).Result()
		if err != nil || v != "v-"+k {
			t.Fatalf("GET %s mid-migration = %q, %v", k, v, err)
		}
		if k == movedKey && asks() != before+1 {
			t.Fatalf("GET %s: %v ASK redirections followed, want 1", k, asks()-before)
		}
		if k == stayingKey && asks() != before {
			t.Fatalf("GET %s (not moved yet) followed an ASK", k)
		}
	}
	must(cl.Set(ctx, newKey, "n", 0).Err())
	if n, err := c.Client(to).Do(ctx, "CLUSTER", "COUNTKEYSINSLOT", slot).Int(); err != nil || n != 2 {
		t.Fatalf("target holds %d keys of slot %d (%v); want the moved one and the new one", n, slot, err)
	}
	if got := testutil.MetricSum(t, p.reg, "redis_carp_proxy_slotmap_epoch"); got != epoch {
		t.Logf("slot map refreshed meanwhile (periodic): epoch %v -> %v", epoch, got)
	}
	if got := testutil.MetricSum(t, p.reg, "redis_carp_proxy_redirections_total", "type", "moved"); got != 0 {
		t.Fatalf("%v MOVED redirections during an ASK-only migration", got)
	}

	// Finish the move: now MOVED, and everything still reads back.
	must(c.Client(from).Do(ctx, "MIGRATE", "127.0.0.1", to.Port, "", 0, 5000, "KEYS", stayingKey).Err())
	must(c.Client(to).Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", toID).Err())
	must(c.Client(from).Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", toID).Err())
	for _, k := range []string{movedKey, stayingKey} {
		if v, err := cl.Get(ctx, k).Result(); err != nil || v != "v-"+k {
			t.Fatalf("GET %s after the move = %q, %v", k, v, err)
		}
	}
}

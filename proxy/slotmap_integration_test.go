package proxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy"
)

// metricSum returns the sum of every sample of a metric family whose labels include want.
func metricSum(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

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
	epoch := metricSum(t, p.reg, "redis_carp_proxy_slotmap_epoch", nil)
	failedBefore := metricSum(t, p.reg, "redis_carp_proxy_slotmap_refreshes_total", map[string]string{"result": "error"})
	for _, n := range c.Nodes {
		if err := c.Client(n).Do(ctx, "CLUSTER", "DELSLOTS", lost).Err(); err != nil {
			t.Fatalf("DELSLOTS on %s: %v", n.Addr, err)
		}
	}
	// Several periodic refreshes now see 16383 slots and must all be refused.
	deadline := time.Now().Add(10 * time.Second)
	for metricSum(t, p.reg, "redis_carp_proxy_slotmap_refreshes_total", map[string]string{"result": "error"}) < failedBefore+3 {
		if time.Now().After(deadline) {
			t.Fatal("no refused refresh within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := metricSum(t, p.reg, "redis_carp_proxy_slotmap_epoch", nil); got != epoch {
		t.Fatalf("slot map epoch moved from %v to %v: an incomplete map was accepted", epoch, got)
	}
	if ok, why := p.srv.Ready(); !ok {
		t.Fatalf("not ready with the last good map: %s", why)
	}
	for i := 0; i < 200; i++ {
		k := fmt.Sprintf("cov%d", i)
		if proxy.KeySlot([]byte(k)) == lost {
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
	for metricSum(t, p.reg, "redis_carp_proxy_slotmap_epoch", nil) == epoch {
		if time.Now().After(deadline) {
			t.Fatal("complete map not accepted again within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

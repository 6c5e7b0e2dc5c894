package proxy_test

import (
	"context"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy"
)

// TestEndpointsPerVIP serves two VIPs (two loopback listeners, one Endpoint each) from one
// Server: both route through the shared slot map; client metrics, INFO proxy and Ready
// report each VIP; closing one VIP's clients leaves the other's connected.
func TestEndpointsPerVIP(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil) // the default endpoint (127.0.0.1) serves p.addr
	ctx := context.Background()
	serve := func(ep *proxy.Endpoint) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- ep.Serve(ln) }()
		t.Cleanup(func() {
			ln.Close()
			if err := <-done; err != nil {
				t.Errorf("Serve %s: %v", ep.VIP(), err)
			}
		})
		return ln.Addr().String()
	}
	// A first answered command proves Serve created the default endpoint (it is created
	// when Serve starts): it comes first in the endpoint order.
	if err := p.client(t).Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	epA, epB := p.srv.Endpoint("198.51.100.101"), p.srv.Endpoint("198.51.100.102")
	if p.srv.Endpoint("198.51.100.101") != epA {
		t.Fatal("Endpoint returned a second endpoint for the same VIP")
	}
	epA.SetHostState(func() proxy.HostState { return proxy.HostState{CARP: "MASTER", Active: true} })
	epB.SetHostState(func() proxy.HostState { return proxy.HostState{CARP: "BACKUP", Active: false} })
	addrA, addrB := serve(epA), serve(epB)
	client := func(addr string) *redis.Client {
		cl := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1, MaxRetries: -1, DisableIdentity: true, Protocol: 2})
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	ca, cb := client(addrA), client(addrB)
	if err := ca.Set(ctx, "ep:{a}", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := cb.Get(ctx, "ep:{a}").Result(); err != nil || v != "1" {
		t.Fatalf("GET through the other VIP = %q, %v", v, err)
	}
	if epA.Clients() != 1 || epB.Clients() != 1 {
		t.Fatalf("clients: A %d, B %d", epA.Clients(), epB.Clients())
	}
	for _, vip := range []string{"198.51.100.101", "198.51.100.102"} {
		if v := testutil.MetricSum(t, p.reg, "redis_carp_proxy_client_connections", "vip", vip); v != 1 {
			t.Errorf("client_connections{vip=%q} = %v, want 1", vip, v)
		}
		if v := testutil.MetricSum(t, p.reg, "redis_carp_proxy_client_connections_accepted_total", "vip", vip); v != 1 {
			t.Errorf("client_connections_accepted_total{vip=%q} = %v, want 1", vip, v)
		}
	}

	info, err := ca.Info(ctx, "proxy").Result()
	if err != nil {
		t.Fatal(err)
	}
	// The default endpoint (p.addr, static) exists too: three VIPs, states differ.
	for _, want := range []string{"carp_state:static,MASTER,BACKUP\r\nactive:1\r\n", "vips:3\r\n",
		"vip1:addr=198.51.100.101,carp_state=MASTER,active=1,clients=1\r\n",
		"vip2:addr=198.51.100.102,carp_state=BACKUP,active=0,clients=1\r\n"} {
		if !strings.Contains(info, want) {
			t.Errorf("INFO proxy lacks %q:\n%s", want, info)
		}
	}
	ok, why := p.srv.Ready()
	if !ok || !strings.Contains(why, "198.51.100.101: active (CARP state MASTER), slot map epoch ") ||
		!strings.Contains(why, "\n198.51.100.102: not active (CARP state BACKUP), slot map epoch ") {
		t.Errorf("Ready = %v, %q", ok, why)
	}
	if ok, why := epB.Ready(); ok || !strings.HasPrefix(why, "not active (CARP state BACKUP)") {
		t.Errorf("Ready of B = %v, %q", ok, why)
	}
	if _, found := p.srv.LookupEndpoint("198.51.100.103"); found {
		t.Error("LookupEndpoint found a VIP never created")
	}
	if err := p.srv.ClusterHealthy(); err != nil {
		t.Errorf("ClusterHealthy with a complete, fresh map: %v", err)
	}

	// B loses its VIP: only B's client is closed.
	epB.CloseClients(100 * time.Millisecond)
	testutil.WaitFor(t, 5*time.Second, "B's client closed", func() bool { return epB.Clients() == 0 })
	if err := ca.Ping(ctx).Err(); err != nil {
		t.Fatalf("A's client after B's clients were closed: %v", err)
	}
	if epA.Clients() != 1 {
		t.Fatalf("A has %d clients, want 1", epA.Clients())
	}
	if v := testutil.MetricSum(t, p.reg, "redis_carp_proxy_client_connections_closed_total", "vip", "198.51.100.102"); v != 1 {
		t.Errorf("client_connections_closed_total{vip=B} = %v, want 1", v)
	}
	if v := testutil.MetricSum(t, p.reg, "redis_carp_proxy_client_connections_closed_total", "vip", "198.51.100.101"); v != 0 {
		t.Errorf("client_connections_closed_total{vip=A} = %v, want 0", v)
	}
}

package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/gate"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy"
)

var (
	sharedOnce sync.Once
	shared     *testcluster.Cluster
	sharedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Close()
	}
	os.Exit(code)
}

// sharedCluster returns a cluster for tests that do not change its topology.
func sharedCluster(t testing.TB) *testcluster.Cluster {
	t.Helper()
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		shared, sharedErr = testcluster.Start(ctx, testcluster.Options{})
	})
	if sharedErr != nil {
		t.Fatalf("start cluster: %v", sharedErr)
	}
	return shared
}

type testProxy struct {
	addr string
	srv  *proxy.Server
	reg  *prometheus.Registry
}

// startProxy runs a proxy for c on a loopback port until the test ends.
func startProxy(t testing.TB, c *testcluster.Cluster, mutate func(*config.Config)) *testProxy {
	t.Helper()
	cfg := config.Default()
	cfg.ClusterSeeds = c.Seeds()[:1]
	cfg.Listen = "127.0.0.1:0"
	cfg.SlotmapRefresh = time.Second
	if mutate != nil {
		mutate(cfg)
	}
	var w io.Writer = io.Discard
	if testing.Verbose() {
		w = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	reg := prometheus.NewRegistry()
	srv := proxy.NewServer(cfg, log, reg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ln.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		srv.Close()
	})
	return &testProxy{addr: ln.Addr().String(), srv: srv, reg: reg}
}

// client returns a plain (non-cluster) go-redis client of the proxy, speaking RESP2 as the
// reference client does (resp3_test.go sets Protocol 3).
func (p *testProxy) client(t testing.TB, opts ...func(*redis.Options)) *redis.Client {
	o := &redis.Options{Addr: p.addr, PoolSize: 8, MaxRetries: -1, ReadTimeout: 10 * time.Second, DisableIdentity: true, Protocol: 2}
	for _, f := range opts {
		f(o)
	}
	cl := redis.NewClient(o)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// serveTLS serves p's clients also on a TLS listener with the certificate in files
// (requiring client certificates signed by its CA when authClients is set) until the test
// ends, and returns the listener's address.
func serveTLS(t testing.TB, p *testProxy, files *testcluster.TLSFiles, authClients bool) string {
	t.Helper()
	pcfg := config.Default()
	pcfg.TLSCertFile, pcfg.TLSKeyFile = files.CertFile, files.KeyFile
	if authClients {
		pcfg.TLSCACertFile, pcfg.TLSAuthClients = files.CACertFile, true
	}
	stc, err := proxy.ClientTLSConfig(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := gate.WrapTLS(raw, stc) // as the daemon's tls-port: served by the event loops (tlsloop.go)
	go p.srv.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// nodeID returns the cluster ID of n (CLUSTER MYID).
func nodeID(t testing.TB, c *testcluster.Cluster, n *testcluster.Node) string {
	t.Helper()
	id, err := c.NodeID(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// threeMasters returns the cluster's masters, failing unless there are at least three.
func threeMasters(t testing.TB, c *testcluster.Cluster) []*testcluster.Node {
	t.Helper()
	masters, err := c.Masters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(masters) < 3 {
		t.Fatalf("%d masters", len(masters))
	}
	return masters
}

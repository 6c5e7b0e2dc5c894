package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// TestClusterHealthy walks the states the CARP demotion check must tell apart: no map, an
// incomplete cluster, a complete map no refresh has confirmed for too long, a fresh one.
func TestClusterHealthy(t *testing.T) {
	cfg := config.Default()
	cfg.ClusterSeeds = []string{"127.0.0.1:1"}
	cfg.SlotmapRefresh = time.Second
	cfg.BackendConnectTimeout = time.Second
	cfg.BackendReadTimeout = time.Second
	s := NewServer(cfg, nil, nil)
	defer s.Close()
	check := func(want string) {
		t.Helper()
		err := s.ClusterHealthy()
		switch {
		case want == "" && err != nil:
			t.Fatalf("ClusterHealthy = %v, want nil", err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Fatalf("ClusterHealthy = %v, want an error containing %q", err, want)
		}
	}
	check("no slot map loaded")
	m := &slotMap{masters: []*node{{addr: "127.0.0.1:1"}}, epoch: 1, loaded: time.Now()}
	s.cl.smap.Store(m)
	s.cl.covered.Store(command.NumSlots - 1)
	check("serves 16383 of 16384 slots")
	s.cl.covered.Store(command.NumSlots)
	check("")
	// 3 × 1s refresh + 1s + 1s timeouts = 5s: a map confirmed 6s ago is stale.
	old := *m
	old.loaded = time.Now().Add(-6 * time.Second)
	s.cl.smap.Store(&old)
	check("slot map not confirmed for 6")
}

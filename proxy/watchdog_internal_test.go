package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// TestWatchdogWakesAfterIdle: the watchdog of a shared node connection sleeps while nothing
// is pending; a command sent after a quiet spell to a node that stopped answering must
// still end in a timeout error, not wait for the node.
func TestWatchdogWakesAfterIdle(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	ctx := context.Background()
	cfg := config.Default()
	cfg.ClusterSeeds = c.Seeds()[:1]
	cfg.BackendReadTimeout = 500 * time.Millisecond
	_, addr := serveInternal(t, cfg)

	key := "watchdog-idle"
	owner, err := c.OwnerOf(ctx, command.KeySlot([]byte(key)))
	if err != nil {
		t.Fatal(err)
	}
	conn, br, send := dialInternal(t, addr)
	roundTrip := func(cmd ...string) string {
		t.Helper()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		send(cmd...)
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
		return strings.TrimSpace(line)
	}
	if got := roundTrip("SET", key, "1"); got != "+OK" {
		t.Fatalf("SET: %q", got)
	}
	time.Sleep(300 * time.Millisecond) // the watchdogs find nothing pending and sleep
	if err := c.Freeze(owner); err != nil {
		t.Fatal(err)
	}
	defer c.Resume(owner)
	start := time.Now()
	got := roundTrip("GET", key)
	if !strings.Contains(got, "did not answer in time") {
		t.Fatalf("GET on a frozen node after idle: %q, want a timeout error", got)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout error after %v", d)
	}
}

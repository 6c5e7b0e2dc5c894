package main

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Static mode (the default): the daemon serves through the gate at once, and stops
// cleanly.
func TestDaemonStaticServes(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runDaemon(ctx, []string{"--listen", addr, "--cluster-seeds", strings.Join(c.Seeds(), ","),
			"--admin-listen", "", "--shutdown-timeout", "1s"}, io.Discard)
	}()
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	defer rdb.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := rdb.Set(ctx, "daemon:static", "ok", 0).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy not serving in static mode: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v, err := rdb.Get(ctx, "daemon:static").Result(); err != nil || v != "ok" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not stop")
	}
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("listener still open after shutdown")
	}
}

// A CARP mode that cannot work is an error at start, not a proxy that never serves.
func TestDaemonCarpConfigErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--carp-mode", "vip"}, // no vip
		{"--carp-mode", "static", "--carp-demote", "yes"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := runDaemon(ctx, append([]string{"--listen", freeAddr(t), "--cluster-seeds", "127.0.0.1:1", "--admin-listen", ""}, args...), io.Discard)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "carp") {
			t.Errorf("%v: err = %v", args, err)
		}
	}
}

package main

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

// TestRootNeeds (issue 28, finding 17): the daemon runs as an unprivileged user by
// default; what only root may do is named by key, and an unprivileged daemon whose
// configuration asks for it refuses to start with one error telling how to run it as root.
func TestRootNeeds(t *testing.T) {
	unprivileged := func() *config.Config {
		c := config.Default()
		c.Listen, c.AdminListen, c.TLSPort = "127.0.0.1:6379", "127.0.0.1:9479", 0
		return c
	}
	if n := rootNeeds(unprivileged(), true); len(n) != 0 {
		t.Fatalf("defaults need root: %q", n)
	}
	if err := checkPrivileges(unprivileged(), 1001); err != nil {
		t.Fatalf("defaults as uid 1001: %v", err)
	}

	for _, tc := range []struct {
		name     string
		set      func(*config.Config)
		pfReload bool // FreeBSD: pf is there
		want     string
	}{
		{"carp-demote", func(c *config.Config) { c.CarpMode, c.CarpDemote = "freebsd", true }, true, "carp-demote yes"},
		{"pf-reload", func(c *config.Config) { c.PFReload = true }, true, "pf-reload yes"},
		{"listen", func(c *config.Config) { c.Listen = "198.51.100.10:636" }, false, "listen 198.51.100.10:636"},
		{"tls-port", func(c *config.Config) { c.TLSPort = 443 }, false, "tls-port 443"},
		{"admin-listen", func(c *config.Config) { c.AdminListen = "127.0.0.1:80" }, false, "admin-listen 127.0.0.1:80"},
	} {
		c := unprivileged()
		tc.set(c)
		n := rootNeeds(c, tc.pfReload)
		if len(n) != 1 || !strings.HasPrefix(n[0], tc.want) {
			t.Errorf("%s: rootNeeds = %q, want one entry %q", tc.name, n, tc.want)
		}
	}
	// Without pf (not FreeBSD) pf-reload does nothing, so it needs nothing; a demotion in
	// vip mode writes carp-health-file, which needs no root either.
	c := unprivileged()
	c.PFReload = true
	c.CarpMode, c.CarpDemote = "vip", true
	if n := rootNeeds(c, false); len(n) != 0 {
		t.Fatalf("pf-reload without pf, carp-demote in vip mode: %q", n)
	}

	c = unprivileged()
	c.CarpMode, c.CarpDemote = "freebsd", true
	c.Listen = "127.0.0.1:636"
	if err := checkPrivileges(c, 0); err != nil {
		t.Fatalf("as root: %v", err)
	}
	err := checkPrivileges(c, 1001)
	if !errors.Is(err, errNeedsRoot) {
		t.Fatalf("as uid 1001: %v", err)
	}
	for _, want := range []string{"uid 1001", "carp-demote yes", "net.inet.carp.demotion", "listen 127.0.0.1:636", "redis_carp_proxy_user=root"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestDaemonRefusesUnprivileged: the daemon checks before it opens anything. Run as uid
// 1001, a listener on port 636 stops the start with the error naming listen; the same
// configuration on a port above 1023 starts (and is stopped by the test).
func TestDaemonRefusesUnprivileged(t *testing.T) {
	old := geteuid
	geteuid = func() int { return 1001 }
	t.Cleanup(func() { geteuid = old })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := runDaemon(ctx, []string{"--listen", "127.0.0.1:636", "--cluster-seeds", "127.0.0.1:1", "--admin-listen", ""}, io.Discard)
	if !errors.Is(err, errNeedsRoot) || !strings.Contains(err.Error(), "listen 127.0.0.1:636") || !strings.Contains(err.Error(), "redis_carp_proxy_user=root") {
		t.Fatalf("listen on 636 as uid 1001: %v", err)
	}
	addr := freeAddr(t)
	done := make(chan error, 1)
	go func() {
		done <- runDaemon(ctx, []string{"--listen", addr, "--cluster-seeds", "127.0.0.1:1", "--admin-listen", ""}, io.Discard)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-done:
			t.Fatalf("listen on %s as uid 1001: %v", addr, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("listen on %s as uid 1001: not listening", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("stop: %v", err)
	}
}

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun/cmdruntest"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

// SIGHUP re-applies the allowlist file to pf's table, after validating it: a file with a
// bad line runs no pfctl at all, so the kernel keeps the previous table.
func TestReloadAllowlist(t *testing.T) {
	rec := cmdruntest.New(nil)

	allow := filepath.Join(t.TempDir(), "allow.list")
	if err := os.WriteFile(allow, []byte("# web tier\n198.51.100.10\n198.51.100.64/26 # lb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.PFAllowFile = allow
	n, err := reloadAllowlist(context.Background(), rec, cfg, "test.conf")
	if err != nil || n != 2 {
		t.Fatalf("reloadAllowlist = %d, %v", n, err)
	}
	want := "$ /sbin/pfctl -a redis-carp-proxy -t redis_allow -T replace -f " + allow + "\n"
	if got := rec.Log(); got != want {
		t.Fatalf("commands:\n%s\nwant:\n%s", got, want)
	}

	if err := os.WriteFile(allow, []byte("198.51.100.10\nnot-an-address\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := reloadAllowlist(context.Background(), rec, cfg, "test.conf"); err == nil || !strings.Contains(err.Error(), allow+":2:") {
		t.Fatalf("bad file: %v, want an error naming line 2", err)
	}
	if got := rec.Log(); got != want {
		t.Fatalf("a bad allowlist ran commands:\n%s", got)
	}
}

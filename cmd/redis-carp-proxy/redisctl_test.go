package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis-carp-proxy/redis-carp-proxy/clusteradmin"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun/cmdruntest"
	"github.com/redis-carp-proxy/redis-carp-proxy/redissetup"
)

func TestRedisInitCommand(t *testing.T) {
	root := t.TempDir()
	var out, errb bytes.Buffer
	args := []string{"redis", "init", "--ports", "7000, 7001", "--bind", "198.51.100.11", "--root", root, "--flavor", "valkey", "--dry-run"}
	if err := run(args, &out, &errb, cmdruntest.New(nil)); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "would create /usr/local/etc/valkey-7001.conf") || !strings.Contains(out.String(), "+valkey_profiles=\"7000 7001\"") {
		t.Fatalf("dry run output:\n%s", out.String())
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("dry run wrote %v", entries)
	}
	out.Reset()
	if err := run(args[:len(args)-1], &out, &errb, cmdruntest.New(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/rc.conf.d/valkey")); err != nil {
		t.Fatal(err)
	}

	for _, bad := range [][]string{
		{"redis"},
		{"redis", "start"},
		{"redis", "init", "--ports", "70x0", "--bind", "198.51.100.11"},
		{"redis", "init", "--ports", "7000", "--bind", "198.51.100.11", "extra"},
	} {
		if err := run(bad, &out, &errb, cmdruntest.New(nil)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if err := run([]string{"redis", "init", "--bind", "198.51.100.11", "--root", root}, &out, &errb, cmdruntest.New(nil)); !errors.Is(err, redissetup.ErrBadOptions) {
		t.Errorf("no ports: %v", err)
	}
}

func TestClusterCommandArgs(t *testing.T) {
	var out, errb bytes.Buffer
	for _, c := range []struct {
		args []string
		want error
	}{
		{[]string{"cluster", "create", "127.0.0.1:1", "--replicas", "1", "127.0.0.1:1"}, clusteradmin.ErrBadArgs},
		{[]string{"cluster", "reset", "--yes", "nohostport"}, clusteradmin.ErrBadArgs},
		{[]string{"cluster", "check", "nohostport"}, clusteradmin.ErrBadArgs},
	} {
		if err := run(c.args, &out, &errb, cmdruntest.New(nil)); !errors.Is(err, c.want) {
			t.Errorf("%q: %v, want %v", c.args, err, c.want)
		}
	}
	for _, bad := range [][]string{{"cluster"}, {"cluster", "fix"}, {"cluster", "check"}, {"cluster", "check", "a:1", "b:2"}, {"cluster", "create", "--bogus"}} {
		if err := run(bad, &out, &errb, cmdruntest.New(nil)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

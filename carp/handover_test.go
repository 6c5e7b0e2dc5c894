package carp

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHandoverStateFile(t *testing.T) {
	for conf, want := range map[string]string{
		"":                                       "/var/run/redis-carp-proxy.handover",
		"/usr/local/etc/redis-carp-proxy.conf":   "/var/run/redis-carp-proxy.handover",
		"/usr/local/etc/redis-carp-proxy-b.conf": "/var/run/redis-carp-proxy-b.handover",
		"/etc/other.conf":                        "/var/run/redis-carp-proxy-other.handover",
	} {
		if got := HandoverStateFile(conf); got != want {
			t.Errorf("HandoverStateFile(%q) = %q, want %q", conf, got, want)
		}
	}
}

// A planned handover adds its own DemotionDelta to the kernel counter and records it in
// its own file: the daemon's health demotion (its own file, its own delta) and the
// handover never undo each other, in either order.
func TestHandoverDemotionBesideHealthDemotion(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := &fakeKernel{}
	health := &sysctlDemoter{run: k, delta: DemotionDelta, state: filepath.Join(dir, "redis-carp-proxy.demotion")}
	ho, err := NewHandoverDemoter("freebsd", filepath.Join(dir, "redis-carp-proxy.handover"), k)
	if err != nil {
		t.Fatal(err)
	}
	if err := health.Demote(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ho.Demote(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ho.Demote(ctx); err != nil { // a second handover adds nothing
		t.Fatal(err)
	}
	if got := k.value(); got != 2*DemotionDelta {
		t.Fatalf("counter %d with both demotions, want %d", got, 2*DemotionDelta)
	}
	if n, err := HandoverApplied(filepath.Join(dir, "redis-carp-proxy.handover")); err != nil || n != DemotionDelta {
		t.Fatalf("HandoverApplied = %d, %v", n, err)
	}
	// The daemon becomes healthy again (or restarts): the host stays handed over.
	if err := health.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if got := k.value(); got != DemotionDelta {
		t.Fatalf("counter %d after the health restore, want the handover's %d", got, DemotionDelta)
	}
	// handover --undo removes exactly its own share.
	if err := ho.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if got := k.value(); got != 0 {
		t.Fatalf("counter %d after undo", got)
	}
	if n, _ := HandoverApplied(filepath.Join(dir, "redis-carp-proxy.handover")); n != 0 {
		t.Fatalf("handover still recorded: %d", n)
	}
	want := `$ /sbin/sysctl net.inet.carp.demotion=240
$ /sbin/sysctl net.inet.carp.demotion=240
$ /sbin/sysctl -i -n net.inet.carp.demotion
$ /sbin/sysctl net.inet.carp.demotion=-240
$ /sbin/sysctl -i -n net.inet.carp.demotion
$ /sbin/sysctl net.inet.carp.demotion=-240
`
	if got := k.Log(); got != want {
		t.Fatalf("commands:\n%s\nwant:\n%s", got, want)
	}
}

func TestHandoverDemoterVIPModeWritesTrackFile(t *testing.T) {
	ctx := context.Background()
	f := filepath.Join(t.TempDir(), "redis-carp-proxy.handover")
	d, err := NewHandoverDemoter("vip", f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Demote(ctx); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f); string(b) != "240\n" {
		t.Fatalf("track file after demote: %q", b)
	}
	if n, err := HandoverApplied(f); err != nil || n != DemotionDelta {
		t.Fatalf("HandoverApplied = %d, %v", n, err)
	}
	if err := d.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f); string(b) != "0\n" {
		t.Fatalf("track file after undo: %q", b)
	}
}

func TestHandoverDemoterRefusesStatic(t *testing.T) {
	if _, err := NewHandoverDemoter("static", "/x", nil); err == nil || !strings.Contains(err.Error(), "nothing moves the VIP") {
		t.Fatalf("static: %v", err)
	}
	f := filepath.Join(t.TempDir(), "h")
	os.WriteFile(f, []byte("banana\n"), 0o644)
	if _, err := HandoverApplied(f); err == nil {
		t.Fatal("a garbage state file was accepted")
	}
}

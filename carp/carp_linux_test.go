package carp

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/netnslab"
)

func TestVIPSourceRead(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		ifname, vip string
		want        State
	}{
		{"", "127.0.0.1", Master},
		{"lo", "127.0.0.1", Master},
		{"", "198.51.100.100", Backup}, // not on this machine
	} {
		s := &vipSource{ifname: tc.ifname, vip: netip.MustParseAddr(tc.vip)}
		if st, err := s.read(ctx); err != nil || st != tc.want {
			t.Errorf("%s on %q: %v %v", tc.vip, tc.ifname, st, err)
		}
	}
	s := &vipSource{ifname: "rcp-no-such-if", vip: netip.MustParseAddr("127.0.0.1")}
	if _, err := s.read(ctx); err == nil {
		t.Error("missing interface: no error")
	}
	// The rtnetlink subscription opens and ends with ctx.
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := s.watch(wctx, make(chan struct{}, 1)); err != nil {
		t.Fatalf("watch: %v", err)
	}
	if _, err := newFreeBSDSource(Config{}, netip.Addr{}); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("freebsd mode on linux: %v", err)
	}
}

// The rtnetlink subscription for real, in a network namespace of its own: adding and
// removing the VIP there is seen as events (not only by polling).
func TestVIPSourceEventsInNetns(t *testing.T) {
	if why := netnslab.Unavailable(); why != "" {
		t.Skip(why)
	}
	lab := netnslab.New(t)
	lab.AddNS("carp")
	ns := lab.NS("carp")
	if err := lab.IP("-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"); err != nil {
		t.Fatal(err)
	}
	if err := lab.IP("-n", ns, "link", "set", "v0", "up"); err != nil {
		t.Fatal(err)
	}
	s := &vipSource{ifname: "v0", vip: netip.MustParseAddr("198.51.100.100")}
	read := func() State {
		var st State
		var err error
		if e := lab.InNS("carp", func() { st, err = s.read(context.Background()) }); e != nil || err != nil {
			t.Fatal(e, err)
		}
		return st
	}
	ctx, cancel := context.WithCancel(context.Background())
	kick := make(chan struct{}, 1)
	done := make(chan error, 1)
	go lab.InNS("carp", func() { done <- s.watch(ctx, kick) })
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	time.Sleep(100 * time.Millisecond) // let the subscription start
	if st := read(); st != Backup {
		t.Fatalf("before: %v", st)
	}
	waitKick := func(what string) {
		t.Helper()
		select {
		case <-kick:
		case <-time.After(2 * time.Second):
			t.Fatalf("no rtnetlink event for %s", what)
		}
	}
	for len(kick) > 0 {
		<-kick
	}
	if err := lab.IP("-n", ns, "addr", "add", "198.51.100.100/32", "dev", "v0"); err != nil {
		t.Fatal(err)
	}
	waitKick("RTM_NEWADDR")
	if st := read(); st != Master {
		t.Fatalf("with the VIP: %v", st)
	}
	if err := lab.IP("-n", ns, "addr", "del", "198.51.100.100/32", "dev", "v0"); err != nil {
		t.Fatal(err)
	}
	waitKick("RTM_DELADDR")
	if st := read(); st != Backup {
		t.Fatalf("after removing the VIP: %v", st)
	}
}

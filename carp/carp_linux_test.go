package carp

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"
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

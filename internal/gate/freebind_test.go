//go:build linux || freebsd

package gate

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
)

// IP_BINDANY refused (no PRIV_NETINET_BINDANY: not root, or a jail without VNET): the
// listener still opens on an address that is configured, and the refusal is logged once
// per process, not at every activation of every VIP.
func TestFreeBindRefusedLoggedOnce(t *testing.T) {
	oldSet, oldOpt := setFreeBind, freeBindOptional
	t.Cleanup(func() { setFreeBind, freeBindOptional, freeBindRefusal = oldSet, oldOpt, refusal{} })
	// FreeBSD's behaviour, simulated where the option needs no privilege:
	// ip_output.c answers priv_check's EPERM.
	setFreeBind = func(int, bool) error { return syscall.EPERM }
	freeBindOptional = true
	freeBindRefusal = refusal{}

	var logs testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for range 3 { // three gates' activations (three VIPs)
		addr := freeAddr(t)
		g := &Gate{Addr: addr, VIP: "127.0.0.1", Server: &echoServer{conns: map[net.Conn]bool{}}, Log: log}
		states := make(chan Want)
		done := make(chan error, 1)
		go func() { done <- g.Follow(context.Background(), states) }()
		states <- want(true)
		waitDial(t, addr)
		close(states)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "IP_BINDANY refused"); n != 1 {
		t.Fatalf("refusal logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "operation not permitted") {
		t.Fatalf("refusal logged without its error:\n%s", logs.String())
	}
	// Where the option is not optional (Linux's IP_FREEBIND), its failure fails the listen.
	freeBindOptional = false
	if ln, err := Listen(context.Background(), "127.0.0.1:0"); err == nil {
		ln.Close()
		t.Fatal("listen succeeded although the free-bind option failed")
	}
}

func waitDial(t *testing.T, addr string) {
	t.Helper()
	for range 300 {
		if canDial(addr) {
			return
		}
	}
	t.Fatalf("%s never accepted", addr)
}

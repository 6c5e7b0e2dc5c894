package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/handoff"
)

// Inherited listeners go to the gate of the same address and kind; one no gate takes in
// time (a VIP in BACKUP here) is closed and not reported as adopted, so the old process
// keeps accepting on it.
func TestOfferListenersAdoptsMatching(t *testing.T) {
	old := listenWait
	listenWait = 200 * time.Millisecond
	t.Cleanup(func() { listenWait = old })
	r := newRestart(config.Default(), "/etc/x.conf", nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var lns []net.Listener
	var fds []int
	for i := 0; i < 3; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		fd, err := dupListener(ln)
		if err != nil {
			t.Fatal(err)
		}
		lns, fds = append(lns, ln), append(fds, fd)
	}
	infos := []handoff.ListenerInfo{{Addr: lns[0].Addr().String()}, {Addr: lns[1].Addr().String(), TLS: true}, {Addr: lns[2].Addr().String()}}
	plain := r.inheritedListen(false, nil, func(context.Context, string) (net.Listener, error) { return nil, unix.EADDRINUSE })
	got := make(chan []int, 1)
	go func() { got <- r.OfferListeners(infos, fds) }()
	<-r.offered
	ln, err := plain(context.Background(), infos[0].Addr)
	if err != nil {
		t.Fatalf("inherited plain listener: %v", err)
	}
	defer ln.Close()
	// The TLS listener's address asked for as plain is not it: the base listen runs.
	if _, err := plain(context.Background(), infos[1].Addr); err != unix.EADDRINUSE {
		t.Fatalf("plain listen of the TLS address: %v", err)
	}
	adopted := <-got
	if len(adopted) != 1 || adopted[0] != 0 {
		t.Fatalf("adopted %v, want [0]", adopted)
	}
	// Not taken in time: closed, and a late gate binds its own.
	if _, err := plain(context.Background(), infos[2].Addr); err != unix.EADDRINUSE {
		t.Fatalf("late take of an abandoned listener: %v", err)
	}
}

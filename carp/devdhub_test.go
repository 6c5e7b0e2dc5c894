package carp

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// devd serves at most 10 clients (sbin/devd/devd.cc max_clients), and every VIP has a
// watcher: twelve watchers (twelve VIPs) share one connection, each kicked only for its
// own vhid; the connection closes when the last watcher stops, and the next watcher
// connects again.
func TestDevdOneConnectionForAllWatchers(t *testing.T) {
	path, ln := listenDevd(t)
	const n = 12
	ctx, cancel := context.WithCancel(context.Background())
	kicks := make([]chan struct{}, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		kicks[i] = make(chan struct{}, 1)
		vhid := i + 1
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- watchDevd(ctx, path, func(ev devdEvent) bool { return ev.vhid == vhid && ev.ifname == "em0" }, kicks[i])
		}()
	}
	conn, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range n { // every watcher is attached (and kicked once for it)
		select {
		case <-kicks[i]:
		case <-time.After(2 * time.Second):
			t.Fatalf("watcher %d not attached", i+1)
		}
	}
	// No second connection: a second accept finds nothing.
	ln.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if c, err := ln.AcceptUnix(); err == nil {
		c.Close()
		t.Fatal("a second devd connection was opened")
	}
	ln.SetDeadline(time.Time{})
	for _, vhid := range []int{3, 12} {
		fmt.Fprintf(conn, "!system=CARP subsystem=%d@em0 type=MASTER\n", vhid)
		select {
		case <-kicks[vhid-1]:
		case <-time.After(2 * time.Second):
			t.Fatalf("vhid %d: no kick", vhid)
		}
	}
	conn.Write([]byte("!system=CARP subsystem=5@em1 type=MASTER\n")) // another interface
	time.Sleep(50 * time.Millisecond)
	for i := range n {
		select {
		case <-kicks[i]:
			t.Fatalf("watcher %d kicked for an event of another vhid", i+1)
		default:
		}
	}
	cancel()
	wg.Wait()
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("watcher after cancel: %v", err)
		}
	}
	// The last watcher gone, the connection is closed.
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(make([]byte, 16)); err == nil {
		t.Fatal("devd connection still open after every watcher stopped")
	}
	// A new watcher connects again.
	kick := make(chan struct{}, 1)
	ctx2, cancel2 := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- watchDevd(ctx2, path, nil, kick) }()
	c2, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	<-kick
	// devd going away ends every watcher with an error.
	c2.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("watcher returned nil when devd went away")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("watcher still running after devd went away")
	}
	cancel2()
}

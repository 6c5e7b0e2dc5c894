package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/carp"
)

// With carp-demote in freebsd mode the state file is locked by the running process. A
// second instance is refused as before; the new process of an in-place restart (it took
// the listeners over) starts serving at once and starts its health monitor once the
// predecessor has let the state go.
func TestStateLockHeldByThePredecessor(t *testing.T) {
	state := filepath.Join(t.TempDir(), "redis-carp-proxy.demotion")
	held, err := carp.LockState(state)
	if err != nil {
		t.Fatal(err)
	}
	_, busy := carp.LockState(state)
	if !errors.Is(busy, carp.ErrStateInUse) {
		t.Fatalf("second lock: %v", busy)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	cw := &carpParts{lockBusy: busy, lockState: state}
	if _, err := cw.awaitStateLock(context.Background(), false, log); !errors.Is(err, carp.ErrStateInUse) {
		t.Fatalf("a second instance: %v, want ErrStateInUse", err)
	}

	ready, err := cw.awaitStateLock(context.Background(), true, log)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
		t.Fatal("ready while the predecessor holds the state")
	case <-time.After(150 * time.Millisecond):
	}
	held.Close() // the predecessor exits
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("the state was not taken over after the predecessor let go")
	}
	cw.close()
	if again, err := carp.LockState(state); err != nil {
		t.Fatalf("close did not release the state: %v", err)
	} else {
		again.Close()
	}

	free := &carpParts{}
	if ready, err := free.awaitStateLock(context.Background(), false, log); err != nil {
		t.Fatal(err)
	} else {
		<-ready // no lock to wait for
	}
}

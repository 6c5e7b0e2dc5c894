// Package gate opens the client listener while this host should serve (CARP MASTER) and
// closes it, draining existing clients, when it should not. It knows nothing about how the
// state is learned (package carp) or what is served (package proxy).
package gate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Server is what the gate controls: the proxy.
type Server interface {
	// Serve accepts on ln until ln is closed, then returns nil.
	Serve(ln net.Listener) error
	// CloseClients drains and closes the clients accepted so far.
	CloseClients(grace time.Duration)
}

// Gate serves Addr only while active.
type Gate struct {
	Addr string
	// VIP names the virtual address the gate serves (the metrics' vip label, logs).
	VIP    string
	Server Server
	// Drain is how long clients may finish after the host stops being active.
	Drain time.Duration
	// Listen opens the listener; nil means Listen (with IP_FREEBIND/IP_BINDANY).
	Listen  func(ctx context.Context, addr string) (net.Listener, error)
	Log     *slog.Logger
	Metrics *Metrics

	mu       sync.Mutex
	ln       net.Listener
	want     bool // the state Follow was last asked for (handover.go)
	handed   bool // the listener was handed over to a successor: never reopened (handover.go)
	serving  sync.WaitGroup
	draining sync.WaitGroup
}

// Active reports whether the listener is open.
func (g *Gate) Active() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ln != nil
}

// Want is a requested state: Active (serve) or not, learned at At. Activation latency is
// measured from At, so it includes the time the state took to reach the gate.
type Want struct {
	Active bool
	At     time.Time
	// State names the observed state for reports ("MASTER", "BACKUP", "static" …).
	State string
}

// Follow follows the requested states until ctx ends or wants is closed, then closes the
// listener and waits for the drains it started. Transitions are handled one at a time, so
// there is never more than one listener, and a listener is never left closed while active.
func (g *Gate) Follow(ctx context.Context, wants <-chan Want) error {
	if g.Log == nil {
		g.Log = slog.Default()
	}
	if g.VIP != "" {
		g.Log = g.Log.With("vip", g.VIP)
	}
	if g.Listen == nil {
		g.Listen = Listen
	}
	defer func() {
		g.deactivate(time.Now(), false)
		g.serving.Wait()
		g.draining.Wait()
	}()
	var retry <-chan time.Time
	want := false
	for {
		var w Want
		select {
		case <-ctx.Done():
			return nil
		case x, ok := <-wants:
			if !ok {
				return nil
			}
			w = x
		case <-retry:
			retry = nil
			if want && !g.Active() {
				if err := g.activate(ctx, time.Now()); err != nil {
					retry = time.After(time.Second)
				}
			}
			continue
		}
		if w.Active == want && w.Active == g.Active() {
			continue
		}
		want = w.Active
		g.setWant(want)
		retry = nil
		if w.Active {
			if err := g.activate(ctx, w.At); err != nil {
				g.Log.Error("cannot open the client listener; retrying", "addr", g.Addr, "err", err)
				retry = time.After(200 * time.Millisecond)
			}
		} else {
			g.deactivate(w.At, true)
		}
	}
}

func (g *Gate) activate(ctx context.Context, since time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil || g.handed {
		return nil
	}
	ln, err := g.Listen(ctx, g.Addr)
	freeBindRefusal.report(g.Log)
	if err != nil {
		return fmt.Errorf("gate: listen %s: %w", g.Addr, err)
	}
	g.ln = ln
	g.serving.Add(1)
	go func() {
		defer g.serving.Done()
		if err := g.Server.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
			g.Log.Error("serving stopped", "addr", g.Addr, "err", err)
		}
	}()
	d := time.Since(since)
	g.Metrics.activated(g.VIP, d)
	g.Log.Info("active: accepting clients", "addr", ln.Addr().String(), "activation", d)
	return nil
}

// deactivate closes the listener at once and, if drain, drains existing clients in the
// background.
func (g *Gate) deactivate(since time.Time, drain bool) {
	// Closed under the lock: once Active reports false, nothing accepts any more.
	g.mu.Lock()
	ln := g.ln
	g.ln = nil
	if ln != nil {
		ln.Close()
	}
	g.mu.Unlock()
	if ln == nil {
		return
	}
	g.Metrics.deactivated(g.VIP)
	g.Log.Info("inactive: listener closed, draining clients", "addr", g.Addr, "drain", g.Drain, "took", time.Since(since))
	if drain {
		g.draining.Add(1)
		go func() {
			defer g.draining.Done()
			g.Server.CloseClients(g.Drain)
		}()
	}
}

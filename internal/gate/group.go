package gate

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// Group is the gates of one VIP (the plain client listener and, with tls-port, the TLS
// one): they follow one stream of states together. Several VIPs are several Groups, each
// following the CARP state of its own VIP.
type Group struct {
	VIP   string
	Gates []*Gate

	state atomic.Pointer[string] // the last Want's State
}

// Follow hands every Want to each gate of the group, in order, until ctx ends or wants is
// closed; then it stops the gates (closing their listeners, waiting for their drains) and
// returns their errors.
func (g *Group) Follow(ctx context.Context, wants <-chan Want) error {
	return FollowMapped(ctx, g, wants, func(w Want) Want { return w })
}

// FollowMapped is Follow for a stream of another type, such as a CARP watcher's changes:
// want maps each value to the state the gates should be in.
func FollowMapped[T any](ctx context.Context, g *Group, in <-chan T, want func(T) Want) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chans := make([]chan Want, len(g.Gates))
	errs := make([]error, len(g.Gates))
	var wg sync.WaitGroup
	for i, gt := range g.Gates {
		chans[i] = make(chan Want)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = gt.Follow(ctx, chans[i])
		}()
	}
	stop := func() error {
		cancel()
		wg.Wait()
		return errors.Join(errs...)
	}
	for {
		select {
		case <-ctx.Done():
			return stop()
		case v, ok := <-in:
			if !ok {
				return stop()
			}
			w := want(v)
			if w.State != "" {
				g.state.Store(&w.State)
			}
			for _, ch := range chans {
				select {
				case ch <- w:
				case <-ctx.Done():
				}
			}
		}
	}
}

// State returns the name of the last state handed to the group ("INIT" before the first).
func (g *Group) State() string {
	if s := g.state.Load(); s != nil {
		return *s
	}
	return "INIT"
}

// Active reports whether any gate of the group has its listener open: the VIP is served.
func (g *Group) Active() bool {
	for _, gt := range g.Gates {
		if gt.Active() {
			return true
		}
	}
	return false
}

package proxy

import (
	"context"
	"fmt"
	"time"
)

// Service connections are the proxy's own node connections, serving no one client:
// MONITOR's, one per master while a client monitors (monitor_nodes.go), and client-side
// caching's invalidation connections, one per master while a client tracks (trackinv.go).
// Each is a private node connection (private.go) of the first event loop in push mode, as a
// subscription's (pubsub_link.go) and with the same link: the same dial, hand-shake, write
// path and reply framing; its set-up commands are requests whose replies the loop frames
// (roundTrip), every frame it reads afterwards with no request in flight goes to its
// sink's msg on the loop, and its loss to the sink's lost. It is bound to no session: it
// takes no blocking-connections slot, no client's going away closes it; its owner does
// (subLink.close), and shutdown. No goroutine reads it.

// svcLoop is the loop the service connections live on.
func (s *Server) svcLoop() (*loop, error) {
	if len(s.loops) == 0 {
		return nil, fmt.Errorf("%w: no event loop", ErrNotSent)
	}
	return s.loops[0], nil
}

// openSvcLink makes a service connection to n for sink; it dials with its first command.
func (s *Server) openSvcLink(n *node, sink *pushSink) (*subLink, error) {
	l, err := s.svcLoop()
	if err != nil {
		return nil, err
	}
	k := &subLink{l: l}
	ch := make(chan error, 1)
	l.post(func() {
		if l.stopping {
			ch <- fmt.Errorf("%w: %v", ErrNotSent, errShuttingDown)
			return
		}
		k.b = l.newPriv(n)
		k.b.priv.push = sink
		ch <- nil
	})
	if err := <-ch; err != nil {
		return nil, err
	}
	return k, nil
}

// svcSetupWait bounds a service connection's set-up: a dial (which has its own limit) and
// its round trips.
func svcSetupWait(s *Server) time.Duration {
	cfg := s.conf()
	return 2*cfg.BackendConnectTimeout + 2*cfg.BackendReadTimeout
}

// roundTrip writes cmd on the link's connection and returns its replies (replies of
// them), or the first failure. ctx ending closes the connection (a failure).
func (k *subLink) roundTrip(ctx context.Context, cmd []byte, replies int) ([][]byte, error) {
	stop := context.AfterFunc(ctx, k.close)
	defer stop()
	reps, err := (&privConn{l: k.l, b: k.b}).roundTrip(cmd, replies, false)
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("%w: %v", errFateUnknown, ctx.Err())
	}
	return reps, err
}

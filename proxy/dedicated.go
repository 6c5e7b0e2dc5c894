package proxy

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// directPool holds the slots of blocking-connections: every private node connection
// (private.go) takes one while it is bound to a session: a blocking command's, WAIT's, a
// transaction's, and each Pub/Sub subscription connection (pubsub_link.go) for the
// subscription's life. At most limit are bound at once over all loops and nodes.
type directPool struct {
	sem chan struct{}
}

func newDirectPool(limit int) *directPool {
	return &directPool{sem: make(chan struct{}, limit)}
}

// directConn is a node connection read by its own goroutine: the tracking invalidation
// connections' (trackinv.go), one per node for the whole proxy, not per client.
type directConn struct {
	conn net.Conn
	rr   *resp.Reader
}

// roundTrip writes cmd on dc and reads replies replies, giving up when ctx ends (the
// connection is then unusable).
func (dc *directConn) roundTrip(ctx context.Context, cmd []byte, replies int) ([][]byte, error) {
	stop := context.AfterFunc(ctx, func() { dc.conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := dc.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("%w: %v", errFateUnknown, err)
	}
	out := make([][]byte, 0, replies)
	for i := 0; i < replies; i++ {
		rep, err := dc.rr.Next()
		if err != nil {
			return out, fmt.Errorf("%w: %v", errFateUnknown, err)
		}
		out = append(out, rep)
	}
	if ctx.Err() != nil {
		return out, errFateUnknown
	}
	return out, nil
}

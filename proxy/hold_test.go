package proxy_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy"
)

// holdConn is a raw client connection of a hold test.
type holdConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialHold(t *testing.T, addr string) *holdConn {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &holdConn{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func (h *holdConn) send(args ...string) {
	h.t.Helper()
	s := fmt.Sprintf("*%d\r\n", len(args))
	for _, a := range args {
		s += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(h.conn, s); err != nil {
		h.t.Fatal(err)
	}
}

// line reads one reply line within d.
func (h *holdConn) line(d time.Duration) (string, error) {
	h.conn.SetReadDeadline(time.Now().Add(d))
	l, err := h.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// silent checks that nothing arrives, and the connection stays open, for d.
func (h *holdConn) silent(d time.Duration, what string) {
	h.t.Helper()
	l, err := h.line(d)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		h.t.Fatalf("%s: got %q, %v; want no answer while held", what, l, err)
	}
}

func (h *holdConn) want(reply string, what string) {
	h.t.Helper()
	if l, err := h.line(5 * time.Second); err != nil || l != reply {
		h.t.Fatalf("%s: got %q, %v; want %q", what, l, err, reply)
	}
}

// activeClient starts a proxy on c and returns it, its one endpoint and a client that has
// just been answered (recently active).
func activeClient(t *testing.T, c *testcluster.Cluster) (*testProxy, *proxy.Endpoint, *holdConn) {
	p := startProxy(t, c, nil)
	a := dialHold(t, p.addr)
	a.send("PING")
	a.want("+PONG", "before the hold")
	eps := p.srv.Endpoints()
	if len(eps) != 1 {
		t.Fatalf("%d endpoints", len(eps))
	}
	return p, eps[0], a
}

// A hold (a planned handover's first step) answers what a client already sent and keeps
// its next command unread, in its socket, until it is released; a client accepted during
// the hold is held too. HoldStatus counts a client whose command is held as waiting.
func TestHoldKeepsTheNextCommandUntilReleased(t *testing.T) {
	c := sharedCluster(t)
	p, ep, a := activeClient(t, c)
	key := fmt.Sprintf("hold:{%d}", rand.Int())

	st, err := ep.Hold(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st.Clients != 1 || st.Recent != 1 || st.Waiting != 0 {
		t.Fatalf("at the hold: %+v, want 1 client, recently active, not waiting", st)
	}
	a.send("SET", key, "v")
	a.silent(150*time.Millisecond, "SET during the hold")
	b := dialHold(t, p.addr)
	b.send("GET", key)
	b.silent(100*time.Millisecond, "a client accepted during the hold")
	if st, err = ep.HoldStatus(); err != nil || st.Clients != 2 || st.Waiting != 2 {
		t.Fatalf("held: %+v %v, want 2 clients waiting", st, err)
	}
	// Asked of the cluster directly: a client of the proxy would be held too.
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Seeds()})
	defer cc.Close()
	if v, err := cc.Exists(t.Context(), key).Result(); err != nil || v != 0 {
		t.Fatalf("the held SET ran: EXISTS %d %v", v, err)
	}

	ep.Release()
	a.want("+OK", "SET after the release")
	if l, err := b.line(5 * time.Second); err != nil || (l != "$1" && l != "$-1") {
		t.Fatalf("GET after the release: %q %v", l, err)
	}
	a.send("PING")
	a.want("+PONG", "after the release")
}

// A hold lasts through the drain that follows this host's BACKUP: the held client is
// neither answered nor closed (the new MASTER may not listen yet) until the release; then
// its command is answered and the connection closed at that request boundary.
func TestHoldOutlastsTheDrainUntilReleased(t *testing.T) {
	_, ep, a := activeClient(t, sharedCluster(t))
	key := fmt.Sprintf("hold:{%d}", rand.Int())
	if _, err := ep.Hold(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	a.send("SET", key, "v")
	drained := make(chan struct{})
	go func() { defer close(drained); ep.CloseClients(5 * time.Second) }()
	a.silent(300*time.Millisecond, "held client during the drain") // longer than the drain's read window
	ep.Release()
	a.want("+OK", "SET after the release")
	if l, err := a.line(5 * time.Second); err != io.EOF {
		t.Fatalf("after the answer: %q %v, want the connection closed", l, err)
	}
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("CloseClients did not return")
	}
}

// A hold that is not released ends by itself: a handover whose VIP does not move never
// leaves a client waiting longer than the hold's duration.
func TestHoldExpires(t *testing.T) {
	_, ep, a := activeClient(t, sharedCluster(t))
	if _, err := ep.Hold(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	a.send("PING")
	a.want("+PONG", "after the hold expired")
	if took := time.Since(start); took < 200*time.Millisecond || took > 3*time.Second {
		t.Fatalf("answered after %v, want about the hold's 300ms", took)
	}
	if _, err := ep.Hold(0); err == nil {
		t.Fatal("a hold of 0 was accepted")
	}
}

package proxy

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// serveInternal starts a server with cfg and serves it on a loopback listener; it returns
// the server and the listener's address, and stops both when the test ends.
func serveInternal(t *testing.T, cfg *config.Config) (*Server, string) {
	t.Helper()
	srv := NewServer(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener = tl
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() { ln.Close(); <-done })
	return srv, tl.Addr().String()
}

// dialInternal connects a client to addr, closed when the test ends; send writes one
// command in RESP.
func dialInternal(t *testing.T, addr string) (conn net.Conn, br *bufio.Reader, send func(cmd ...string)) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	send = func(cmd ...string) {
		t.Helper()
		if _, err := conn.Write(resp.AppendCommand(nil, toBytes(cmd)...)); err != nil {
			t.Fatal(err)
		}
	}
	return conn, bufio.NewReader(conn), send
}

// TestPipelineOrderAcrossOwnerChange: a client pipelines SET k and then GET k; the SET
// waits at the slot's old owner (frozen) while the proxy learns that the slot moved, and
// the GET, read after that, must not overtake it at the new owner: it sees the SET's value.
func TestPipelineOrderAcrossOwnerChange(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	for _, mode := range []string{"event loop"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			cfg := config.Default()
			cfg.ClusterSeeds = c.Seeds()[:1]
			cfg.SlotmapRefresh = time.Hour // the map changes only when the test says so
			srv, addr := serveInternal(t, cfg)

			key := "{order-" + mode + "}k"
			slot := command.KeySlot([]byte(key))
			a, b, err := c.OwnerAndOther(ctx, slot)
			if err != nil {
				t.Fatal(err)
			}
			conn, br, send := dialInternal(t, addr)
			conn.SetDeadline(time.Now().Add(15 * time.Second))
			read := func() string {
				t.Helper()
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if line[0] == '$' && line != "$-1\r\n" {
					val, err := br.ReadString('\n')
					if err != nil {
						t.Fatal(err)
					}
					return val[:len(val)-2]
				}
				return line[:len(line)-2]
			}
			send("SET", key, "old")
			if got := read(); got != "+OK" {
				t.Fatalf("SET old: %q", got)
			}
			// The slot moves behind the proxy's back: its map still names a.
			if err := c.MoveSlots(ctx, []int{slot}, b); err != nil {
				t.Fatal(err)
			}
			if err := c.Freeze(a); err != nil {
				t.Fatal(err)
			}
			resumed := false
			resume := func() {
				if !resumed {
					resumed = true
					if err := c.Resume(a); err != nil {
						t.Error(err)
					}
				}
			}
			defer resume()
			send("SET", key, "new") // waits at a, which will answer MOVED b
			time.Sleep(100 * time.Millisecond)
			srv.cl.learnOwner(slot, srv.cl.node(b.Addr)) // as if another client got MOVED
			send("GET", key)
			time.Sleep(200 * time.Millisecond)
			resume()
			if got := read(); got != "+OK" {
				t.Fatalf("SET new: %q", got)
			}
			if got := read(); got != "new" {
				t.Fatalf("GET after SET = %q, want %q: it overtook the SET", got, "new")
			}
		})
	}
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// TestRouteOrderAdmit: with commands in flight, a command is held back exactly when its
// slot changed owner since they were routed; an idle client adopts the current map.
func TestRouteOrderAdmit(t *testing.T) {
	a, b := &node{addr: "a"}, &node{addr: "b"}
	m1 := &slotMap{masters: []*node{a}, replicas: [][]*node{nil}} // a serves every slot
	m2 := m1.withOwner(7, b)                                      // slot 7 moved to b
	var o routeOrder
	if !o.admit(m1, 7, true) {
		t.Fatal("idle client held back")
	}
	if !o.admit(m2, 8, false) {
		t.Fatal("slot 8 kept its owner, yet held back")
	}
	if o.admit(m2, 7, false) {
		t.Fatal("slot 7 changed owner with commands in flight, yet admitted")
	}
	if !o.admit(m2, 7, true) || o.sent != m2 {
		t.Fatal("idle again: the current map must be adopted")
	}
	if !o.admit(m2, 7, false) {
		t.Fatal("routed by the same map, yet held back")
	}
}

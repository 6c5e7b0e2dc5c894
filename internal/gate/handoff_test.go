package gate

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
)

// The listener's socket passes to a successor: it accepts there, the gate stops without
// draining its clients and does not reopen on a repeated MASTER, until a failed
// hand-over resumes it.
func TestGateHandsListenerOver(t *testing.T) {
	g, srv, states, addr := startGate(t, 10*time.Millisecond)
	if _, err := g.ListenerFD(); err != ErrNotListening {
		t.Fatalf("ListenerFD while inactive: %v", err)
	}
	states <- want(true)
	testutil.WaitFor(t, waitTimeout, "listener", func() bool { return canDial(addr) })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fd, err := g.ListenerFD()
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "inherited")
	succ, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer succ.Close()
	g.StopAccepting()
	if g.Active() {
		t.Fatal("gate active after StopAccepting")
	}
	states <- want(true)
	time.Sleep(50 * time.Millisecond)
	if g.Active() {
		t.Fatal("gate reopened a handed-over listener")
	}
	// The socket still accepts, in the successor.
	go func() {
		if c2, err := net.Dial("tcp", addr); err == nil {
			c2.Close()
		}
	}()
	succ.(*net.TCPListener).SetDeadline(time.Now().Add(2 * time.Second))
	if c2, err := succ.Accept(); err != nil {
		t.Fatalf("successor accept: %v", err)
	} else {
		c2.Close()
	}
	if srv.drains.Load() != 0 {
		t.Fatal("StopAccepting drained the clients")
	}
	succ.Close()
	g.ResumeAccepting()
	testutil.WaitFor(t, waitTimeout, "reopened", func() bool { return g.Active() && canDial(addr) })
}

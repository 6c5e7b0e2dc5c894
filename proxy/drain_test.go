package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"strings"
	"testing"
	"time"
)

// A drain (the VIP going BACKUP, a planned handover) closes a client at its next request
// boundary: a command the client sent before the drain and the proxy has not handled yet
// (here a SET queued behind a blocking BLPOP) is answered, then the connection is closed.
// Dropping it would reset the connection and fail the client's command.
func TestDrainAnswersWhatWasSentBeforeIt(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	ctx := context.Background()
	list := fmt.Sprintf("drain:{%d}", rand.Int())
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cmd := func(args ...string) string {
		s := fmt.Sprintf("*%d\r\n", len(args))
		for _, a := range args {
			s += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
		}
		return s
	}
	// BLPOP blocks; the SET behind it waits in the proxy's buffer.
	if _, err := io.WriteString(conn, cmd("BLPOP", list, "5")+cmd("SET", list+":k", "v")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	closed := make(chan struct{})
	go func() { defer close(closed); p.srv.CloseClients(3 * time.Second) }()
	time.Sleep(100 * time.Millisecond)
	if err := p.client(t).LPush(ctx, list, "x").Err(); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	var got []string
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			break
		}
		got = append(got, strings.TrimRight(l, "\r\n"))
	}
	want := []string{"*2", "$" + fmt.Sprint(len(list)), list, "$1", "x", "+OK"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("answers before the close: %q, want %q", got, want)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("CloseClients did not return")
	}
}

// A client that never stops sending (pipelining PINGs) does not hold a drain open until
// the grace period: it is read for drainReadWindow (100 ms), then what it has sent is
// answered and it is closed.
func TestDrainOfANonStopClientIsBounded(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stop := make(chan struct{})
	wrote := make(chan struct{})
	go func() { // bounded: 3 s, or until the proxy closes the connection
		defer close(wrote)
		batch := strings.Repeat("*1\r\n$4\r\nPING\r\n", 4096)
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-stop:
				return
			default:
			}
			conn.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := io.WriteString(conn, batch); err != nil {
				return
			}
		}
	}()
	go io.Copy(io.Discard, conn) // the answers
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	p.srv.CloseClients(5 * time.Second)
	took := time.Since(start)
	close(stop)
	<-wrote
	if took > 2*time.Second {
		t.Fatalf("the drain of a client that never stops sending took %v (grace 5s)", took)
	}
	t.Logf("drained in %v", took)
}

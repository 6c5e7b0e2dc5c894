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

package proxy_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
)

// handoffConn is one RESP connection, read line by line (simple replies only).
type handoffConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialHandoff(t *testing.T, addr string) *handoffConn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &handoffConn{t: t, c: c, br: bufio.NewReader(c)}
}

// do sends a command and returns its reply's first line (a bulk's value for $n).
func (r *handoffConn) do(args ...string) string {
	r.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	r.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.c.Write([]byte(b.String())); err != nil {
		r.t.Fatal(err)
	}
	line, err := r.br.ReadString('\n')
	if err != nil {
		r.t.Fatalf("%v: %v", args, err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line[0] == '$' && line != "$-1" {
		v, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatal(err)
		}
		return strings.TrimRight(v, "\r\n")
	}
	return line
}

// An idle client moves from one proxy to another with its state (name, user, RESP
// version), on the same TCP connection; a client inside MULTI stays.
func TestHandoffClientState(t *testing.T) {
	c := sharedCluster(t)
	auth := func(cfg *config.Config) { cfg.RequirePass = "s3cret" }
	a := startProxy(t, c, auth)
	b := startProxy(t, c, auth)

	cl := dialHandoff(t, a.addr)
	if got := cl.do("AUTH", "s3cret"); got != "+OK" {
		t.Fatalf("AUTH: %s", got)
	}
	cl.do("CLIENT", "SETNAME", "web-1")
	cl.do("SET", "handoff:k", "v1")
	tx := dialHandoff(t, a.addr)
	tx.do("AUTH", "s3cret")
	if got := tx.do("MULTI"); got != "+OK" {
		t.Fatalf("MULTI: %s", got)
	}
	noauth := dialHandoff(t, a.addr) // never authenticated: stays unauthenticated
	noauth.do("PING")

	deadline := time.Now().Add(2 * time.Second)
	var moved int
	for moved < 2 && time.Now().Before(deadline) {
		cs, fds := a.srv.TakeIdle(10)
		for i, fd := range fds {
			if cs[i].Name == "" && cs[i].Authed {
				t.Errorf("an authenticated client without its name moved: %+v", cs[i])
			}
			if err := b.srv.AdoptClient(cs[i], fd); err != nil {
				t.Fatal(err)
			}
			moved++
		}
		time.Sleep(10 * time.Millisecond)
	}
	if moved != 2 {
		t.Fatalf("moved %d clients, want 2 (the idle ones; not the one in MULTI)", moved)
	}
	if got := cl.do("GET", "handoff:k"); got != "v1" {
		t.Fatalf("GET after the hand-over: %q", got)
	}
	if got := cl.do("CLIENT", "GETNAME"); got != "web-1" {
		t.Fatalf("CLIENT GETNAME after the hand-over: %q", got)
	}
	if got := noauth.do("GET", "handoff:k"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Fatalf("unauthenticated client after the hand-over: %q", got)
	}
	// The client in MULTI stayed with the old proxy and finishes there.
	tx.do("SET", "handoff:k", "v2")
	if got := tx.do("EXEC"); !strings.HasPrefix(got, "*1") {
		t.Fatalf("EXEC: %q", got)
	}
	if a.srv.Clients() != 1 || b.srv.Clients() != 2 {
		t.Fatalf("clients: old %d, new %d", a.srv.Clients(), b.srv.Clients())
	}
}

// HELLO 3 travels: the adopted client keeps RESP3 (a null is _).
func TestHandoffRESP3(t *testing.T) {
	c := sharedCluster(t)
	a := startProxy(t, c, nil)
	b := startProxy(t, c, nil)
	cl := dialHandoff(t, a.addr)
	cl.c.Write([]byte("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"))
	cl.br.ReadString('\n') // the map header; drain the rest
	time.Sleep(50 * time.Millisecond)
	cl.c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	for {
		if _, err := cl.br.ReadString('\n'); err != nil {
			break
		}
	}
	cl.br = bufio.NewReader(cl.c)
	cs, fds := a.srv.TakeIdle(10)
	if len(fds) != 1 || !cs[0].RESP3 {
		t.Fatalf("TakeIdle: %+v", cs)
	}
	if err := b.srv.AdoptClient(cs[0], fds[0]); err != nil {
		t.Fatal(err)
	}
	if got := cl.do("GET", "handoff:missing"); got != "_" {
		t.Fatalf("GET of a missing key over RESP3 after the hand-over: %q", got)
	}
}

// A TLS client does not move (its TLS session is this process's): when idle it is closed
// at a request boundary, and it reconnects.
func TestHandoffTLSClientClosedWhenIdle(t *testing.T) {
	c := sharedCluster(t)
	a := startProxy(t, c, nil)
	files, err := testcluster.WriteTLSFiles(t.TempDir(), "proxy")
	if err != nil {
		t.Fatal(err)
	}
	taddr := serveTLS(t, a, files, false)
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(files.CACertFile)
	pool.AppendCertsFromPEM(ca)
	tc, err := tls.Dial("tcp", taddr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	cl := &handoffConn{t: t, c: tc, br: bufio.NewReader(tc)}
	if got := cl.do("PING"); got != "+PONG" {
		t.Fatalf("PING over TLS: %q", got)
	}
	time.Sleep(20 * time.Millisecond)
	cs, fds := a.srv.TakeIdle(10)
	if len(fds) != 0 {
		t.Fatalf("a TLS client was handed over: %+v", cs)
	}
	tc.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := cl.br.ReadByte(); err == nil {
		t.Fatal("idle TLS client not closed")
	}
}

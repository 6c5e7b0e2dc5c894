package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy"
)

// tlsProxy starts a proxy on the shared cluster with a TLS listener as the daemon's
// tls-port (served by the event loops, tlsloop.go) and returns it, the TLS address and
// the client configuration.
func tlsProxy(t *testing.T, mutate func(*config.Config)) (*testProxy, string, *tls.Config) {
	t.Helper()
	p := startProxy(t, sharedCluster(t), mutate)
	files, err := testcluster.WriteTLSFiles(t.TempDir(), "proxy")
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, p, files, false)
	ctc, err := files.Config()
	if err != nil {
		t.Fatal(err)
	}
	return p, addr, ctc
}

// dialTLSRaw opens a raw RESP connection over TLS.
func dialTLSRaw(t *testing.T, addr string, ctc *tls.Config) *rawConn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, ctc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

// TestTLSClientPipelinesLargeBatch: a TLS client that writes a pipeline much larger than
// the loop's read buffer and than a TLS record (bytes crypto/tls holds after one read are
// read on without a readiness event) gets every reply, in order.
func TestTLSClientPipelinesLargeBatch(t *testing.T) {
	_, addr, ctc := tlsProxy(t, nil)
	r := dialTLSRaw(t, addr, ctc)
	const n = 20000
	big := strings.Repeat("b", 300<<10) // one value over many records
	var cmds strings.Builder
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("tlsbatch:%d", i%500)
		v := strconv.Itoa(i)
		if i == n/2 {
			v = big
		}
		fmt.Fprintf(&cmds, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(v), v)
		fmt.Fprintf(&cmds, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(k), k)
	}
	if cmds.Len() < 1<<20 {
		t.Fatalf("batch of %d bytes: want over 1 MiB", cmds.Len())
	}
	werr := make(chan error, 1)
	go func() {
		r.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := io.WriteString(r.c, cmds.String())
		werr <- err
	}()
	r.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for i := 0; i < n; i++ {
		if got, err := r.br.ReadString('\n'); err != nil || got != "+OK\r\n" {
			t.Fatalf("SET %d: %q %v", i, got, err)
		}
		want := strconv.Itoa(i)
		if i == n/2 {
			want = big
		}
		hdr, err := r.br.ReadString('\n')
		if err != nil || hdr != fmt.Sprintf("$%d\r\n", len(want)) {
			t.Fatalf("GET %d: header %q %v, want $%d", i, hdr, err, len(want))
		}
		b := make([]byte, len(want)+2)
		if _, err := io.ReadFull(r.br, b); err != nil || string(b[:len(want)]) != want {
			t.Fatalf("GET %d: %v, value of %d bytes differs", i, err, len(want))
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
}

// TestTLSClientNotReadingHitsOutputLimit: a TLS client that pipelines GETs and never reads
// is closed at the output-buffer limit: the ciphertext its socket does not take counts.
func TestTLSClientNotReadingHitsOutputLimit(t *testing.T) {
	p, addr, ctc := tlsProxy(t, func(cfg *config.Config) {
		cfg.OutputLimit = config.OutputLimit{Hard: 1 << 20}
	})
	ctx := context.Background()
	cl := p.client(t)
	val := strings.Repeat("o", 100<<10)
	for i := 0; i < 20; i++ {
		if err := cl.Set(ctx, fmt.Sprintf("tlsob{1}%d", i), val, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	tc := dialTLSRaw(t, addr, ctc).c
	var cmds strings.Builder
	for i := 0; i < 400; i++ {
		k := fmt.Sprintf("tlsob{1}%d", i%20)
		fmt.Fprintf(&cmds, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(k), k)
	}
	before := p.srv.Clients()
	tc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	tc.Write([]byte(cmds.String())) // may fail once the proxy closes the connection
	testutil.WaitFor(t, 15*time.Second, "the TLS client that does not read disconnected", func() bool {
		return testutil.MetricSum(t, p.reg, "redis_carp_proxy_client_output_limit_closed_total", "class", "normal") == 1
	})
	testutil.WaitFor(t, 5*time.Second, "the client released", func() bool { return p.srv.Clients() == before-1 })
	tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, tc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after the limit closed the client (%d bytes read)", n)
	}
	if n >= 400*100<<10 {
		t.Fatalf("the client got all %d bytes of replies", n)
	}
	if err := cl.Ping(ctx).Err(); err != nil {
		t.Fatalf("other client: %v", err)
	}
}

// TestTLSClientKillEndsGoroutines: loop-served TLS clients cost no goroutine of their own,
// and CLIENT KILL closes one at once (its connection ends, nothing is left running).
func TestTLSClientKillEndsGoroutines(t *testing.T) {
	p, addr, ctc := tlsProxy(t, nil)
	admin := dialRaw(t, p.addr)
	admin.send("PING\r\n")
	if got := admin.line(); got != "+PONG" {
		t.Fatal(got)
	}
	base := runtime.NumGoroutine()
	const n = 20
	conns := make([]*rawConn, n)
	ids := make([]string, n)
	for i := range conns {
		r := dialTLSRaw(t, addr, ctc)
		r.send("*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n")
		id := r.line()
		if !strings.HasPrefix(id, ":") {
			t.Fatalf("CLIENT ID over TLS: %q", id)
		}
		conns[i], ids[i] = r, id[1:]
	}
	// The handshake goroutines have ended; the clients are the loop's.
	testutil.WaitFor(t, 5*time.Second, "no goroutine per TLS client", func() bool {
		return runtime.NumGoroutine() < base+n/2
	})
	for i, r := range conns {
		admin.send(fmt.Sprintf("*4\r\n$6\r\nCLIENT\r\n$4\r\nKILL\r\n$2\r\nID\r\n$%d\r\n%s\r\n", len(ids[i]), ids[i]))
		if got := admin.line(); got != ":1" {
			t.Fatalf("CLIENT KILL ID %s: %q", ids[i], got)
		}
		r.expectClosed()
	}
	testutil.WaitFor(t, 5*time.Second, "the killed TLS clients released", func() bool { return p.srv.Clients() == 1 })
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("goroutines back to %d", base), func() bool {
		return runtime.NumGoroutine() <= base
	})
}

// TestTLSOversizedRequest: a TLS client's oversized request and a TLS flood of one endless
// inline line get Redis's protocol errors, and the connection is closed.
func TestTLSOversizedRequest(t *testing.T) {
	_, addr, ctc := tlsProxy(t, func(cfg *config.Config) {
		cfg.ProtoMaxBulkLen = 1 << 30
		cfg.QueryBufferLimit = 1 << 20
		cfg.ProtoInlineMaxSize = 4096
	})
	r := dialTLSRaw(t, addr, ctc)
	r.send("PING\r\n*2\r\n$3\r\nSET\r\n$104857600\r\n")
	if got := r.line(); got != "+PONG" {
		t.Fatalf("first reply %q", got)
	}
	if got := r.line(); got != "-ERR Protocol error: command exceeds client-query-buffer-limit" {
		t.Fatalf("oversized bulk over TLS: %q", got)
	}
	r.expectClosed()

	// A flood: the proxy stops at proto-inline-max-size, answers and closes.
	r = dialTLSRaw(t, addr, ctc)
	sent, werr := r.floodInline()
	if werr == nil {
		t.Fatalf("proxy accepted %d bytes of one inline line over TLS", sent)
	}
	if got := r.line(); got != "-ERR Protocol error: too big inline request" {
		t.Fatalf("endless inline over TLS: %q", got)
	}
}

// TestTLSClientIdleTimeoutAndStdlibListener: a loop-served TLS client is closed when idle;
// a TLS listener the proxy did not make (crypto/tls's own) is still served (bridge).
func TestTLSClientIdleTimeoutAndStdlibListener(t *testing.T) {
	p, addr, ctc := tlsProxy(t, func(cfg *config.Config) { cfg.ClientIdleTimeout = 300 * time.Millisecond })
	r := dialTLSRaw(t, addr, ctc)
	r.send("PING\r\n")
	if got := r.line(); got != "+PONG" {
		t.Fatal(got)
	}
	start := time.Now()
	r.expectClosed()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("idle TLS client closed after %v", d)
	}

	files, err := testcluster.WriteTLSFiles(t.TempDir(), "std")
	if err != nil {
		t.Fatal(err)
	}
	scfg := config.Default()
	scfg.TLSCertFile, scfg.TLSKeyFile = files.CertFile, files.KeyFile
	stc, err := proxy.ClientTLSConfig(scfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", stc)
	if err != nil {
		t.Fatal(err)
	}
	go p.srv.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	sctc, err := files.Config()
	if err != nil {
		t.Fatal(err)
	}
	s := dialTLSRaw(t, ln.Addr().String(), sctc)
	s.send("*3\r\n$3\r\nSET\r\n$5\r\nstdls\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$5\r\nstdls\r\n")
	for _, want := range []string{"+OK", "$1", "v"} {
		if got := s.line(); got != want {
			t.Fatalf("through a crypto/tls listener: %q, want %q", got, want)
		}
	}
}

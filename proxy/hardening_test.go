package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
)

func TestMaxClients(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, func(cfg *config.Config) { cfg.MaxClients = 2 })
	a, b := dialRaw(t, p.addr), dialRaw(t, p.addr)
	for _, r := range []*rawConn{a, b} {
		r.send("PING\r\n")
		if got := r.line(); got != "+PONG" {
			t.Fatalf("PING: %q", got)
		}
	}
	x := dialRaw(t, p.addr)
	if got := x.line(); got != "-ERR max number of clients reached" {
		t.Fatalf("third client got %q", got)
	}
	x.expectClosed()
	if v := testutil.MetricSum(t, p.reg, "redis_carp_proxy_client_connections_rejected_total", "reason", "maxclients"); v != 1 {
		t.Fatalf("rejected metric = %v", v)
	}
	a.c.Close()
	testutil.WaitFor(t, 10*time.Second, "the closed client to be released", func() bool { return p.srv.Clients() == 1 })
	y := dialRaw(t, p.addr)
	y.send("PING\r\n")
	if got := y.line(); got != "+PONG" {
		t.Fatalf("after a client left: %q", got)
	}
}

// TestBadInputRejectedBeforeBuffering covers the malformed-input cases not in
// TestProtocolErrorsCloseOnlyThatClient: the error comes as soon as the offending header or
// inline bytes arrive, without the proxy waiting for (and buffering) the announced body.
func TestBadInputRejectedBeforeBuffering(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, func(cfg *config.Config) {
		cfg.ProtoMaxBulkLen = 1 << 30
		cfg.QueryBufferLimit = 1 << 20
		cfg.ProtoMaxMultibulkLen = 1000
		cfg.ProtoInlineMaxSize = 4096
	})
	other := p.client(t)
	start := time.Now()
	for _, tc := range []struct{ name, in, want string }{
		{"2GB bulk header", "*1\r\n$2147483648\r\n", "-ERR Protocol error: invalid bulk length"},
		{"bulk over query buffer limit", "*2\r\n$3\r\nSET\r\n$104857600\r\n", "-ERR Protocol error: command exceeds client-query-buffer-limit"},
		{"too many arguments", "*1001\r\n", "-ERR Protocol error: invalid multibulk length"},
		{"header without CR", "*1\n", "-ERR Protocol error: invalid multibulk length"},
		{"bulk header without CR", "*1\r\n$4\n", "-ERR Protocol error: invalid multibulk length"},
		{"overlong count", "*" + strings.Repeat("9", 40) + "\r\n", "-ERR Protocol error: invalid multibulk length"},
		// "*0", "*-5": an empty command, skipped as Redis does (TestCompatWording).
		{"negative bulk", "*2\r\n$3\r\nGET\r\n$-2\r\n", "-ERR Protocol error: invalid bulk length"},
		{"garbage length", "*1\r\n$4x\r\n", "-ERR Protocol error: invalid bulk length"},
	} {
		r := dialRaw(t, p.addr)
		r.send("PING\r\n" + tc.in)
		if got := r.line(); got != "+PONG" {
			t.Fatalf("%s: first reply %q", tc.name, got)
		}
		if got := r.line(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
		r.expectClosed()
		t.Logf("%s: %v", tc.name, time.Since(start))
	}
	// A never-ending inline line: bytes streamed until the proxy closes the connection; it
	// must stop after proto-inline-max-size, not keep reading.
	r := dialRaw(t, p.addr)
	sent, werr := r.floodInline()
	if werr == nil {
		t.Fatalf("proxy accepted %d bytes of one inline line", sent)
	}
	if got := r.line(); got != "-ERR Protocol error: too big inline request" {
		t.Fatalf("endless inline: %q", got)
	}
	t.Logf("endless: %v", time.Since(start))
	// Binary garbage with NUL bytes and CRs, no newline: an inline line too.
	r = dialRaw(t, p.addr)
	r.send(strings.Repeat("\x00\xff\r\x7f", 2000))
	if got := r.line(); got != "-ERR Protocol error: too big inline request" {
		t.Fatalf("binary garbage: %q", got)
	}
	r.expectClosed()
	if err := other.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("other client affected: %v", err)
	}
	if v := testutil.MetricSum(t, p.reg, "redis_carp_proxy_client_protocol_errors_total"); v < 10 {
		t.Fatalf("protocol error metric = %v, want >= 10", v)
	}
}

// TestPipelineBackPressure: a client that sends commands but never reads its replies
// makes the proxy stop reading from it (its writes block), and every reply is still
// delivered in order once it reads.
func TestPipelineBackPressure(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, func(cfg *config.Config) {
		cfg.ClientPipelineDepth = 8
		cfg.OutputLimit = config.OutputLimit{}
	})
	ctx := context.Background()
	// SET key value GET: commands and replies of 16 KiB each, so the socket buffers hold
	// a bounded number of them.
	val := strings.Repeat("v", 16<<10)
	if err := p.client(t).Set(ctx, "bp{1}", val, 0).Err(); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, p.addr)
	cmd := []byte(fmt.Sprintf("*4\r\n$3\r\nSET\r\n$5\r\nbp{1}\r\n$%d\r\n%s\r\n$3\r\nGET\r\n", len(val), val))
	sent := 0
	start := time.Now()
	for {
		r.c.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := r.c.Write(cmd)
		sent += n
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatal(err)
			}
			break
		}
		if sent > 64<<20 {
			t.Fatalf("proxy kept reading: %d bytes of commands accepted without reading a reply", sent)
		}
	}
	cmds := sent / len(cmd)
	t.Logf("writes blocked after %d commands (%d KiB, %v)", cmds, sent>>10, time.Since(start))
	// Every whole command sent is answered, in order.
	// Finish the partly written command while reading (the proxy reads again only as
	// replies are consumed).
	r.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	werr := make(chan error, 1)
	werr <- nil
	if rest := sent % len(cmd); rest != 0 {
		<-werr
		go func() { _, err := r.c.Write(cmd[rest:]); werr <- err }()
		cmds++
	}
	defer func() {
		if err := <-werr; err != nil {
			t.Errorf("finishing the last command: %v", err)
		}
	}()
	want := "$" + strconv.Itoa(len(val)) + "\r\n" + val + "\r\n"
	buf := make([]byte, len(want))
	for i := 0; i < cmds; i++ {
		r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(r.br, buf); err != nil {
			t.Fatalf("reply %d of %d: %v", i, cmds, err)
		}
		if string(buf) != want {
			t.Fatalf("reply %d: %.40q", i, buf)
		}
	}
}

// TestOutputBufferLimit: a slow consumer, a huge reply and a Pub/Sub subscriber that does
// not read are disconnected once the proxy holds more than the limit for them, and counted.
func TestOutputBufferLimit(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, func(cfg *config.Config) {
		cfg.OutputLimit = config.OutputLimit{Hard: 1 << 20}
		cfg.OutputLimitPubSub = config.OutputLimit{Hard: 256 << 10}
	})
	ctx := context.Background()
	cl := p.client(t)
	val := strings.Repeat("o", 100<<10)
	for i := 0; i < 20; i++ {
		if err := cl.Set(ctx, fmt.Sprintf("ob{1}%d", i), val, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Set(ctx, "obig", strings.Repeat("b", 2<<20), 0).Err(); err != nil {
		t.Fatal(err)
	}

	// A reply over the hard limit closes even a client that reads.
	err := p.client(t).Get(ctx, "obig").Err()
	if err == nil {
		t.Fatal("2 MiB reply delivered despite a 1 MiB output limit")
	}
	testutil.WaitFor(t, 10*time.Second, "normal overflow counted", func() bool {
		return testutil.MetricSum(t, p.reg, "redis_carp_proxy_client_output_limit_closed_total", "class", "normal") == 1
	})

	// A pipelining client that does not read.
	r := dialRaw(t, p.addr)
	var cmds strings.Builder
	for i := 0; i < 400; i++ {
		k := fmt.Sprintf("ob{1}%d", i%20)
		fmt.Fprintf(&cmds, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(k), k)
	}
	r.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	r.c.Write([]byte(cmds.String())) // may fail once the proxy closes the connection
	testutil.WaitFor(t, 10*time.Second, "slow consumer disconnected", func() bool {
		return testutil.MetricSum(t, p.reg, "redis_carp_proxy_client_output_limit_closed_total", "class", "normal") == 2
	})
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, r.br)
	if err != nil && !isReset(err) {
		t.Fatalf("slow consumer: %v after %d bytes, want the connection closed", err, n)
	}
	if n >= 400*100<<10 {
		t.Fatalf("slow consumer got all %d bytes of replies", n)
	}

	// A subscriber that does not read.
	s := dialRaw(t, p.addr)
	s.c.(*net.TCPConn).SetReadBuffer(4 << 10)
	s.send("*2\r\n$9\r\nSUBSCRIBE\r\n$6\r\nobchan\r\n")
	for _, want := range []string{"*3", "$9", "subscribe", "$6", "obchan", ":1"} {
		if got := s.line(); got != want {
			t.Fatalf("SUBSCRIBE: %q, want %q", got, want)
		}
	}
	msg := strings.Repeat("m", 64<<10)
	deadline := time.Now().Add(20 * time.Second)
	for testutil.MetricSum(t, p.reg, "redis_carp_proxy_client_output_limit_closed_total", "class", "pubsub") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("subscriber that does not read was never disconnected")
		}
		if err := cl.Publish(ctx, "obchan", msg).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Others are unaffected.
	if v, err := cl.Get(ctx, "ob{1}0").Result(); err != nil || v != val {
		t.Fatalf("other client: %v", err)
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset by peer") || errors.Is(err, net.ErrClosed))
}

func TestIdleTimeoutAndKeepalive(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, func(cfg *config.Config) {
		cfg.ClientIdleTimeout = 300 * time.Millisecond
		cfg.TCPKeepalive = 77 * time.Second
	})
	r := dialRaw(t, p.addr)
	r.send("PING\r\n")
	if got := r.line(); got != "+PONG" {
		t.Fatal(got)
	}
	// The kernel's view of the proxy side of the connection shows the keepalive timer.
	if _, err := exec.LookPath("ss"); err != nil {
		t.Log("ss (iproute2) not installed; keepalive not checked")
	} else {
		_, port, _ := net.SplitHostPort(p.addr)
		out, err := exec.Command("ss", "-tnoH", "state", "established", "( sport = :"+port+" )").CombinedOutput()
		if err != nil {
			t.Fatalf("ss: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`timer:\(keepalive,(?:1min)?(\d+)(?:\.\d+)?(m?s)`).FindSubmatch(out)
		if m == nil || !strings.Contains(string(out), "keepalive,1min") {
			t.Fatalf("no ~77s keepalive timer on the proxy's socket:\n%s", out)
		}
	}
	start := time.Now()
	r.expectClosed()
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", d)
	}
}

func TestDenyCommandsAndReload(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, func(cfg *config.Config) { cfg.DenyCommands = []string{"keys", "flushall"} })
	r := dialRaw(t, p.addr)
	r.send("KEYS *\r\nkeys x\r\nMULTI\r\nFLUSHALL\r\nDISCARD\r\nSET dn 1\r\n")
	for _, want := range []string{
		"-ERR command 'keys' is denied by the proxy configuration (deny-commands)",
		"-ERR command 'keys' is denied by the proxy configuration (deny-commands)",
		"+OK",
		"-ERR command 'flushall' is denied by the proxy configuration (deny-commands)",
		"+OK", "+OK",
	} {
		if got := r.line(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if v := testutil.MetricSum(t, p.reg, "redis_carp_proxy_commands_denied_total"); v != 3 {
		t.Fatalf("denied metric = %v", v)
	}
	// Reload: KEYS allowed, GET denied; the open connection sees the change.
	cfg := config.Default()
	cfg.ClusterSeeds = c.Seeds()[:1]
	cfg.Listen = "127.0.0.1:1"
	cfg.SlotmapRefresh = time.Second
	cfg.DenyCommands = []string{"get"}
	cfg.ProtoMaxBulkLen = 2048
	applied, restart := p.srv.Reload(cfg)
	if got := strings.Join(applied, " "); got != "proto-max-bulk-len deny-commands" {
		t.Fatalf("applied %q", got)
	}
	if got := strings.Join(restart, " "); got != "listen" {
		t.Fatalf("need restart %q", got)
	}
	r.send("KEYS dn\r\nGET dn\r\n")
	for _, want := range []string{"*1", "$2", "dn", "-ERR command 'get' is denied by the proxy configuration (deny-commands)"} {
		if got := r.line(); got != want {
			t.Fatalf("after reload: %q, want %q", got, want)
		}
	}
	r.send("*2\r\n$4\r\nECHO\r\n$3000\r\n")
	if got := r.line(); got != "-ERR Protocol error: invalid bulk length" {
		t.Fatalf("reloaded bulk limit on the open connection: %q", got)
	}
}

func TestAuthUsers(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, func(cfg *config.Config) {
		cfg.RequirePass = "s3cret"
		cfg.Users = []config.User{{Name: "app", Password: "apppw"}, {Name: "ro", Password: "ropw", ReadOnly: true}}
	})
	key := "au" + strconv.FormatInt(time.Now().UnixNano(), 10)
	r := dialRaw(t, p.addr)
	r.send(strings.ReplaceAll("GET K\r\nPING\r\nAUTH wrong\r\nAUTH app nope\r\nAUTH ro ropw\r\nSET K 1\r\nGET K\r\nAUTH app apppw\r\nSET K 2\r\nGET K\r\n", "K", key))
	for _, want := range []string{
		"-NOAUTH Authentication required.", "-NOAUTH Authentication required.",
		"-WRONGPASS invalid username-password pair or user is disabled.",
		"-WRONGPASS invalid username-password pair or user is disabled.",
		"+OK", "-NOPERM User has no permissions to run the 'set' command", "$-1",
		"+OK", "+OK", "$1", "2",
	} {
		if got := r.line(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	ctx := context.Background()
	if err := p.client(t, func(o *redis.Options) { o.Password = "s3cret" }).Set(ctx, "au", "3", 0).Err(); err != nil {
		t.Fatalf("requirepass: %v", err)
	}
	// Reload a new password: new clients need it, the open connection stays authenticated.
	cfg := *p.srv.Config()
	cfg.RequirePass = "n3w"
	cfg.Users = nil
	p.srv.Reload(&cfg)
	if err := p.client(t, func(o *redis.Options) { o.Password = "s3cret" }).Ping(ctx).Err(); err == nil {
		t.Fatal("old password still accepted after reload")
	}
	if err := p.client(t, func(o *redis.Options) { o.Password = "n3w" }).Ping(ctx).Err(); err != nil {
		t.Fatalf("new password: %v", err)
	}
	// The open connection authenticated as "app", whom the reload removed, is closed at its
	// next command (issue 28, finding 10).
	r.send("PING\r\n")
	if got := r.line(); !strings.HasPrefix(got, "-ERR the user of this connection was removed") {
		t.Fatalf("open connection of a removed user after reload: %q", got)
	}
	r.expectClosed()
}

// TestGracefulShutdownDrains: Close answers a command in flight when it finishes within
// shutdown-timeout, and cuts it off after the timeout otherwise.
func TestGracefulShutdownDrains(t *testing.T) {
	c := sharedCluster(t)
	for _, tc := range []struct {
		name    string
		grace   time.Duration
		block   string
		answerd bool
	}{
		{"drained", 10 * time.Second, "1", true},
		{"cut off", 300 * time.Millisecond, "20", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, c, func(cfg *config.Config) { cfg.ShutdownTimeout = tc.grace })
			r := dialRaw(t, p.addr)
			key := "gs" + strconv.FormatInt(time.Now().UnixNano(), 10)
			r.send("BLPOP " + key + " " + tc.block + "\r\n")
			time.Sleep(200 * time.Millisecond) // let the command reach the node
			start := time.Now()
			closed := make(chan struct{})
			go func() { p.srv.Close(); close(closed) }()
			r.c.SetReadDeadline(time.Now().Add(15 * time.Second))
			l, err := r.br.ReadString('\n')
			if tc.answerd {
				if err != nil || l != "*-1\r\n" {
					t.Fatalf("in-flight BLPOP: %q %v, want its nil reply", l, err)
				}
				r.expectClosed()
			} else if err == nil {
				// The cut may race with the command's own error reply; either way the
				// command is not answered as if it had completed, and the connection ends.
				if !strings.HasPrefix(l, "-ERR proxy:") {
					t.Fatalf("BLPOP answered %q; want the connection cut at the grace period", l)
				}
				r.expectClosed()
			}
			select {
			case <-closed:
			case <-time.After(15 * time.Second):
				t.Fatal("Close did not return")
			}
			if d := time.Since(start); !tc.answerd && d > 5*time.Second {
				t.Fatalf("Close took %v with a %v grace period", d, tc.grace)
			}
		})
	}
}

func TestTLSClientsAndBackends(t *testing.T) {
	if out, err := exec.Command("redis-server", "--version").Output(); err != nil || !strings.Contains(string(out), "v=") {
		t.Fatalf("redis-server --version: %v", err)
	}
	dir := t.TempDir()
	files, err := testcluster.WriteTLSFiles(dir, "node")
	if err != nil {
		t.Fatal(err)
	}
	c := testcluster.New(t, testcluster.Options{TLS: files})
	srvFiles, err := testcluster.WriteTLSFiles(dir, "proxy")
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, c, func(cfg *config.Config) {
		cfg.TLSCluster = true
		cfg.BackendTLSCertFile, cfg.BackendTLSKeyFile, cfg.BackendTLSCACertFile = files.CertFile, files.KeyFile, files.CACertFile
	})
	ctx := context.Background()
	cl := p.client(t)
	for i := 0; i < 50; i++ {
		k := fmt.Sprintf("tls%d", i)
		if err := cl.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatalf("SET through TLS backends: %v", err)
		}
		if v, err := cl.Get(ctx, k).Result(); err != nil || v != k {
			t.Fatalf("GET %s: %q %v", k, v, err)
		}
	}

	// The client-side TLS listener, requiring client certificates.
	tlsAddr := serveTLS(t, p, srvFiles, true)
	ctc, err := srvFiles.Config()
	if err != nil {
		t.Fatal(err)
	}
	tcl := redis.NewClient(&redis.Options{Addr: tlsAddr, TLSConfig: ctc, MaxRetries: -1, DisableIdentity: true})
	t.Cleanup(func() { tcl.Close() })
	if v, err := tcl.Get(ctx, "tls7").Result(); err != nil || v != "tls7" {
		t.Fatalf("GET over the TLS listener: %q %v", v, err)
	}
	// A TLS client is served by an event loop through its bridge: pipelines of values
	// larger than a TLS record and than the bridge's buffers arrive whole and in order.
	// (The pipeline stays well below what the kernel's socket buffers hold: go-redis writes
	// all of it before it reads, and the loop stops reading a client that has 256 KiB of
	// replies unread, outPause.)
	big := strings.Repeat("v", 100<<10)
	pipe := tcl.Pipeline()
	for i := 0; i < 12; i++ {
		pipe.Set(ctx, fmt.Sprintf("tls-big-%d", i), fmt.Sprintf("%d:%s", i, big), 0)
		pipe.Get(ctx, fmt.Sprintf("tls-big-%d", i))
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		t.Fatalf("pipelined large values over TLS: %v", err)
	}
	for i := 0; i < 12; i++ {
		if v := cmds[2*i+1].(*redis.StringCmd).Val(); v != fmt.Sprintf("%d:%s", i, big) {
			t.Fatalf("GET tls-big-%d over TLS: %d bytes, want %d", i, len(v), len(big)+len(fmt.Sprint(i))+1)
		}
	}
	// The client's own address (not the bridge's) is what CLIENT INFO shows.
	if info, err := tcl.ClientInfo(ctx).Result(); err != nil || !strings.HasPrefix(info.Addr, "127.0.0.1:") {
		t.Fatalf("CLIENT INFO over TLS: %+v %v", info, err)
	}
	// A TLS client that goes away is closed on the proxy too (the bridge ends with it).
	before := p.srv.Clients()
	extra := redis.NewClient(&redis.Options{Addr: tlsAddr, TLSConfig: ctc, MaxRetries: -1, DisableIdentity: true, PoolSize: 1})
	if err := extra.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if n := p.srv.Clients(); n != before+1 {
		t.Fatalf("clients with one more TLS client: %d, want %d", n, before+1)
	}
	extra.Close()
	testutil.WaitFor(t, 5*time.Second, "the closed TLS client to be released", func() bool { return p.srv.Clients() == before })
	// Without a client certificate the handshake fails.
	noCert := ctc.Clone()
	noCert.Certificates = nil
	conn, err := tls.Dial("tcp", tlsAddr, noCert)
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Write([]byte("PING\r\n"))
		if err == nil {
			_, err = bufio.NewReader(conn).ReadString('\n')
		}
		conn.Close()
	}
	if err == nil {
		t.Fatal("client without a certificate was served")
	}
	// A plain-text client on the TLS port gets no service either.
	r := dialRaw(t, tlsAddr)
	r.send("PING\r\n")
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if l, _ := r.br.ReadString('\n'); strings.Contains(l, "PONG") {
		t.Fatal("plain-text PING answered on the TLS listener")
	}
}

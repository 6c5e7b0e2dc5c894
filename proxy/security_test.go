package proxy_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy"
)

// transports runs f against the proxy's client path. Plain and TLS clients share it (a TLS
// client's bytes reach the same event-loop client through its bridge, transport.go), so
// every request-path limit is checked once, over plain TCP, where a test can send raw
// bytes; TestTLSClientsAndBackends checks the bridge itself.
func transports(t *testing.T, f func(t *testing.T, start func(testing.TB, *testcluster.Cluster, func(*config.Config)) *testProxy)) {
	t.Run("loop", func(t *testing.T) { f(t, startProxy) })
}

// cmd encodes args as a RESP command.
func cmd(args ...string) string {
	var b strings.Builder
	b.WriteString("*" + itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	return b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestConfigSetBoundedAsTheFile (issue 28, finding 8): CONFIG SET of a setting the proxy
// owns accepts only what the configuration file accepts. slowlog-max-len 2^63-1 was
// accepted, and the next slow log entry panicked in makeslice and took the process down.
func TestConfigSetBoundedAsTheFile(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, func(cfg *config.Config) { cfg.EnableAdminCommands = true })
	r := dialRaw(t, p.addr)
	for _, tc := range []struct{ param, value string }{
		{"slowlog-max-len", "9223372036854775807"},
		{"slowlog-max-len", "100001"},
		{"maxclients", "4294967295"},
		{"proto-max-bulk-len", "9223372036854775807"},
		{"client-query-buffer-limit", "9223372036854775807"},
	} {
		r.send(cmd("CONFIG", "SET", tc.param, tc.value))
		if got := r.line(); !strings.HasPrefix(got, "-ERR CONFIG SET failed (possibly related to argument '"+tc.param+"')") {
			t.Errorf("CONFIG SET %s %s: %q, want an error", tc.param, tc.value, got)
		}
	}
	// Within the file's bounds it is applied, and the slow log works with it.
	r.send(cmd("CONFIG", "SET", "slowlog-max-len", "100000", "slowlog-log-slower-than", "0"))
	if got := r.line(); got != "+OK" {
		t.Fatalf("CONFIG SET within bounds: %q", got)
	}
	r.send(cmd("SET", "cfgbound", "v"))
	if got := r.line(); got != "+OK" {
		t.Fatalf("SET: %q", got)
	}
	r.send(cmd("SLOWLOG", "LEN"))
	if got := r.line(); got == ":0" || got[0] != ':' {
		t.Fatalf("SLOWLOG LEN: %q", got)
	}
	if got := p.srv.Config().SlowlogMaxLen; got != 100000 {
		t.Fatalf("slowlog-max-len = %d", got)
	}
}

// TestPanicClosesOnlyThatClient (issue 28, finding 8): a panic while serving one client,
// on the event loop or on its slow path, closes that client only;
// it is counted and the others are served on.
func TestPanicClosesOnlyThatClient(t *testing.T) {
	restore := proxy.SetPanicHook(func(where string, args [][]byte) {
		if len(args) >= 2 && strings.EqualFold(string(args[0]), "echo") && string(args[1]) == "panic-"+where {
			panic("test panic in " + where)
		}
	})
	defer restore()
	c := sharedCluster(t)
	transports(t, func(t *testing.T, start func(testing.TB, *testcluster.Cluster, func(*config.Config)) *testProxy) {
		p := start(t, c, func(cfg *config.Config) { cfg.ClientPipelineDepth = 1 })
		other := dialRaw(t, p.addr)
		other.send("PING\r\n")
		if got := other.line(); got != "+PONG" {
			t.Fatalf("PING: %q", got)
		}
		cases := []struct{ send, where string }{
			{cmd("ECHO", "panic-session", "x"), "session"}, // wrong arity: slow path on a loop
		}
		cases = append(cases, struct{ send, where string }{cmd("ECHO", "panic-loop"), "loop"})
		for _, tc := range cases {
			r := dialRaw(t, p.addr)
			r.send(tc.send)
			r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, _ := io.ReadAll(r.br)
			if s := string(b); s != "" && !strings.HasPrefix(s, "-ERR proxy: internal error") {
				t.Fatalf("%q: got %q", tc.send, s)
			}
			other.send("PING\r\n")
			if got := other.line(); got != "+PONG" {
				t.Fatalf("other client after a panic (%s): %q", tc.where, got)
			}
		}
		// A command resumed when an earlier reply arrives (pipeline depth 1): the panic
		// happens while the loop handles the node's reply, and still costs only this client.
		if strings.HasSuffix(t.Name(), "loop") {
			r := dialRaw(t, p.addr)
			r.send(cmd("GET", "panicresume") + cmd("ECHO", "panic-loop"))
			r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.ReadAll(r.br)
			other.send(cmd("GET", "panicresume"))
			if got := other.line(); got != "$-1" {
				t.Fatalf("other client after a panic in a resumed command: %q", got)
			}
			cases = append(cases, struct{ send, where string }{"", "resumed"})
			if v := testutil.MetricSum(t, p.reg, "redis_carp_proxy_panics_recovered_total", "where", "loop_backend"); v != 0 {
				t.Fatalf("the panic was taken for the node connection's (%v): its other commands failed", v)
			}
		}
		if v := testutil.MetricSum(t, p.reg, "redis_carp_proxy_panics_recovered_total"); v != float64(len(cases)) {
			t.Fatalf("panics_recovered_total = %v, want %d", v, len(cases))
		}
	})
}

// TestUnauthenticatedLimits (issue 28, finding 1): before AUTH a client gets Redis's
// unauthenticated limits (10 arguments, 16 KiB each), not the 512 MB / 1M arguments of an
// authenticated one, on both transports; after AUTH the configured limits apply.
func TestUnauthenticatedLimits(t *testing.T) {
	c := sharedCluster(t)
	transports(t, func(t *testing.T, start func(testing.TB, *testcluster.Cluster, func(*config.Config)) *testProxy) {
		p := start(t, c, func(cfg *config.Config) { cfg.RequirePass = "s3cret" })
		for _, tc := range []struct{ name, in, want string }{
			{"bulk", "*2\r\n$4\r\nAUTH\r\n$16385\r\n", "-ERR Protocol error: unauthenticated bulk length"},
			{"150 MiB AUTH", "*2\r\n$4\r\nAUTH\r\n$157286400\r\n", "-ERR Protocol error: unauthenticated bulk length"},
			{"arguments", "*11\r\n", "-ERR Protocol error: unauthenticated multibulk length"},
		} {
			r := dialRaw(t, p.addr)
			r.send(tc.in)
			if got := r.line(); got != tc.want {
				t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
			}
			r.expectClosed()
		}
		// Within the limits: refused for want of AUTH, the connection stays.
		r := dialRaw(t, p.addr)
		args := []string{"SET", "k", strings.Repeat("v", 16384)}
		for len(args) < 10 {
			args = append(args, "x")
		}
		r.send(cmd(args...))
		if got := r.line(); !strings.HasPrefix(got, "-NOAUTH") {
			t.Fatalf("command within the limits: %q", got)
		}
		r.send(cmd("AUTH", "s3cret"))
		if got := r.line(); got != "+OK" {
			t.Fatalf("AUTH: %q", got)
		}
		big := strings.Repeat("b", 1<<20)
		r.send(cmd("SET", "unauthlim{1}", big))
		if got := r.line(); got != "+OK" {
			t.Fatalf("1 MiB SET after AUTH: %q", got)
		}
		many := []string{"DEL"}
		for i := 0; i < 100; i++ {
			many = append(many, "unauthlim{1}")
		}
		r.send(cmd(many...))
		if got := r.line(); got != ":1" {
			t.Fatalf("100 arguments after AUTH: %q", got)
		}
	})
}

// TestUnfinishedCommandParsedOnce (issue 28, finding 2): a command sent in small pieces is
// parsed once it is whole, not again from its first byte on every read: the bytes handed
// to the parser stay linear in its size (they were quadratic: 3.4 MiB cost seconds of CPU
// and delayed every other client of the loop).
func TestUnfinishedCommandParsedOnce(t *testing.T) {
	c := sharedCluster(t)
	transports(t, func(t *testing.T, start func(testing.TB, *testcluster.Cluster, func(*config.Config)) *testProxy) {
		p := start(t, c, nil)
		other := p.client(t)
		ctx := context.Background()
		// RPUSH with 300,000 small elements (about 4 MiB), and a SET of a 4 MiB value.
		elems := []string{"RPUSH", "parseonce{1}"}
		for i := 0; i < 300000; i++ {
			elems = append(elems, "e"+strconv.Itoa(i%1000000 + 1000000)[1:])
		}
		for _, tc := range []struct {
			name, cmd, want string
		}{
			{"many arguments", cmd(elems...), ":300000"},
			{"one large value", cmd("SET", "parseonce{2}", strings.Repeat("v", 4<<20)), "+OK"},
		} {
			r := dialRaw(t, p.addr)
			before := p.srv.ParseWork()
			const chunk = 4 << 10
			begin := time.Now()
			var slowest time.Duration
			for off := 0; off < len(tc.cmd); off += chunk {
				r.send(tc.cmd[off:min(off+chunk, len(tc.cmd))])
				if off/chunk%64 == 0 { // meanwhile another client is served at once
					t0 := time.Now()
					if err := other.Ping(ctx).Err(); err != nil {
						t.Fatal(err)
					}
					slowest = max(slowest, time.Since(t0))
				}
			}
			if got := r.line(); got != tc.want {
				t.Fatalf("%s: %q", tc.name, got)
			}
			work := p.srv.ParseWork() - before
			t.Logf("%s: %d bytes sent in %d KiB pieces, %d parsed, %v, slowest PING meanwhile %v", tc.name, len(tc.cmd), chunk>>10, work, time.Since(begin), slowest)
			if work > 2*int64(len(tc.cmd)) {
				t.Errorf("%s: %d bytes parsed for a command of %d: parsing is not linear in its size", tc.name, work, len(tc.cmd))
			}
			other.Del(ctx, "parseonce{1}", "parseonce{2}")
		}
	})
}

// TestAuthDeadline (issue 28, finding 3): a connection that does not complete its TLS
// handshake and AUTH within client-auth-timeout is closed, so silent connections cannot
// hold every maxclients slot; client-idle-timeout stays 0.
func TestAuthDeadline(t *testing.T) {
	c := sharedCluster(t)
	transports(t, func(t *testing.T, start func(testing.TB, *testcluster.Cluster, func(*config.Config)) *testProxy) {
		p := start(t, c, func(cfg *config.Config) {
			cfg.RequirePass = "s3cret"
			cfg.MaxClients = 2
			cfg.ClientAuthTimeout = time.Second
		})
		silent := []*rawConn{dialRaw(t, p.addr), dialRaw(t, p.addr)}
		chatty := silent[1]
		chatty.send("PING\r\n") // not silent, but never authenticates
		if got := chatty.line(); !strings.HasPrefix(got, "-NOAUTH") {
			t.Fatalf("PING before AUTH: %q", got)
		}
		testutil.WaitFor(t, 5*time.Second, "both connections to be counted", func() bool { return p.srv.Clients() == 2 })
		locked := dialRaw(t, p.addr)
		if got := locked.line(); got != "-ERR max number of clients reached" {
			t.Fatalf("third client while two are open: %q", got)
		}
		begin := time.Now()
		for _, r := range silent {
			r.expectClosed()
		}
		t.Logf("closed after %v", time.Since(begin))
		testutil.WaitFor(t, 5*time.Second, "the slots to be released", func() bool { return p.srv.Clients() == 0 })
		r := dialRaw(t, p.addr)
		r.send(cmd("AUTH", "s3cret"))
		if got := r.line(); got != "+OK" {
			t.Fatalf("AUTH: %q", got)
		}
		time.Sleep(1500 * time.Millisecond) // past the deadline: an authenticated client stays
		r.send("PING\r\n")
		if got := r.line(); got != "+PONG" {
			t.Fatalf("authenticated client after the deadline: %q", got)
		}
		if v := testutil.MetricSum(t, p.reg, "redis_carp_proxy_client_connections_rejected_total", "reason", "auth_timeout"); v != 2 {
			t.Fatalf("auth_timeout rejections = %v", v)
		}
	})
	// The TLS listener: a connection that never starts its handshake is closed too, also
	// without requirepass.
	dir := t.TempDir()
	files, err := testcluster.WriteTLSFiles(dir, "proxy")
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, c, func(cfg *config.Config) { cfg.ClientAuthTimeout = time.Second })
	tlsAddr := serveTLS(t, p, files, false)
	r := dialRaw(t, tlsAddr)
	begin := time.Now()
	r.expectClosed()
	if d := time.Since(begin); d > 4*time.Second {
		t.Fatalf("silent TLS connection closed after %v", d)
	}
}

// readReply reads one RESP reply as text lines (an aggregate with its elements).
func (r *rawConn) reply() string {
	l := r.line()
	switch l[0] {
	case '$':
		n, _ := strconv.Atoi(l[1:])
		if n < 0 {
			return l
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r.br, buf); err != nil {
			r.t.Fatal(err)
		}
		return string(buf[:n])
	case '*', '%':
		n, _ := strconv.Atoi(l[1:])
		if l[0] == '%' {
			n *= 2
		}
		parts := []string{l}
		for i := 0; i < n; i++ {
			parts = append(parts, r.reply())
		}
		return strings.Join(parts, "\n")
	}
	return l
}

// TestHelloSetnameNeedsAuth (issue 28, finding 4): HELLO applies SETNAME only once the
// client is authenticated, and client names and CLIENT SETINFO values are checked as Redis
// does (no spaces, newlines or other special characters), so nobody can forge CLIENT LIST
// lines.
func TestHelloSetnameNeedsAuth(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, func(cfg *config.Config) { cfg.RequirePass = "s3cret" })
	evil := dialRaw(t, p.addr)
	evil.send(cmd("HELLO", "2", "SETNAME", "forged"))
	if got := evil.line(); !strings.HasPrefix(got, "-NOAUTH") {
		t.Fatalf("HELLO SETNAME before AUTH: %q", got)
	}
	evil.send(cmd("HELLO", "2", "AUTH", "default", "wrong", "SETNAME", "forged2"))
	if got := evil.line(); !strings.HasPrefix(got, "-WRONGPASS") {
		t.Fatalf("HELLO with a wrong password: %q", got)
	}
	admin := dialRaw(t, p.addr)
	admin.send(cmd("AUTH", "s3cret"))
	if got := admin.line(); got != "+OK" {
		t.Fatal(got)
	}
	admin.send(cmd("CLIENT", "LIST"))
	if list := admin.reply(); strings.Contains(list, "forged") {
		t.Fatalf("a name set before AUTH is listed:\n%s", list)
	}
	for _, tc := range []struct{ args []string }{
		{[]string{"HELLO", "2", "AUTH", "default", "s3cret", "SETNAME", "x\nid=1 addr=10.0.0.1:1 name=root"}},
		{[]string{"CLIENT", "SETNAME", "a\tb"}},
		{[]string{"CLIENT", "SETNAME", "a\x7fb"}},
		{[]string{"CLIENT", "SETINFO", "lib-name", "x\ny"}},
		{[]string{"CLIENT", "SETINFO", "lib-ver", "1 2"}},
	} {
		admin.send(cmd(tc.args...))
		if got := admin.line(); !strings.HasPrefix(got, "-ERR") || !strings.Contains(got, "cannot contain spaces, newlines or special characters") {
			t.Errorf("%q: %q", tc.args, got)
		}
	}
	admin.send(cmd("HELLO", "2", "AUTH", "default", "s3cret", "SETNAME", "good-name"))
	if got := admin.reply(); !strings.HasPrefix(got, "*14") {
		t.Fatalf("HELLO AUTH SETNAME: %q", got)
	}
	admin.send(cmd("CLIENT", "LIST"))
	list := admin.reply()
	if !strings.Contains(list, "name=good-name") || strings.Count(list, "\nid=")+strings.Count(list, "id=") < 1 {
		t.Fatalf("CLIENT LIST:\n%s", list)
	}
	if strings.Contains(list, "name=root") || strings.Contains(list, "10.0.0.1") {
		t.Fatalf("forged entry listed:\n%s", list)
	}
}

// TestReadOnlyDeniesByDefault (issue 28, finding 7): a read-only user may run what the
// command table (with subcommand flags) marks read-only and a list of safe proxy commands;
// everything else is refused, also with enable-admin-commands.
func TestReadOnlyDeniesByDefault(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, func(cfg *config.Config) {
		cfg.RequirePass = "s3cret"
		cfg.EnableAdminCommands = true
		cfg.Users = []config.User{{Name: "ro", Password: "ropw", ReadOnly: true}}
	})
	ctx := context.Background()
	rw := p.client(t, func(o *redis.Options) { o.Password = "s3cret" })
	if err := rw.XAdd(ctx, &redis.XAddArgs{Stream: "rostream", ID: "1-1", Values: []string{"f", "v"}}).Err(); err != nil {
		t.Fatal(err)
	}
	rw.Set(ctx, "rokey", "v", 0)
	r := dialRaw(t, p.addr)
	r.send(cmd("AUTH", "ro", "ropw"))
	if got := r.line(); got != "+OK" {
		t.Fatal(got)
	}
	for _, args := range [][]string{
		{"XGROUP", "CREATE", "rostream", "g1", "$"},
		{"XGROUP", "DESTROY", "rostream", "g1"},
		{"ZRANGESTORE", "{z}dst", "{z}src", "0", "-1"},
		{"BITFIELD", "rokey", "SET", "u8", "0", "255"},
		{"ZREMRANGEBYLEX", "rozset", "-", "+"},
		{"PUBLISH", "chan", "msg"},
		{"SPUBLISH", "chan", "msg"},
		{"CONFIG", "SET", "requirepass", "owned"},
		{"CONFIG", "GET", "requirepass"},
		{"CLIENT", "PAUSE", "10000"},
		{"CLIENT", "KILL", "ID", "1"},
		{"SLOWLOG", "RESET"},
		{"EVAL", "return 1", "0"},
		{"SET", "rokey", "x"},
		{"NOSUCHCOMMAND", "x"},
	} {
		r.send(cmd(args...))
		if got := r.line(); !strings.HasPrefix(got, "-NOPERM") {
			t.Errorf("read-only %q: %q, want NOPERM", args, got)
		}
	}
	if v, _ := rw.ConfigGet(ctx, "requirepass").Result(); v["requirepass"] == "owned" {
		t.Fatal("a read-only user changed requirepass")
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"GET", "rokey"}, "v"},
		{[]string{"XINFO", "STREAM", "rostream"}, "*"},
		{[]string{"XRANGE", "rostream", "-", "+"}, "*1"},
		{[]string{"OBJECT", "ENCODING", "rokey"}, "embstr"},
		{[]string{"BITFIELD_RO", "rokey", "GET", "u8", "0"}, "*1"},
		{[]string{"EVAL_RO", "return 1", "0"}, ":1"},
		{[]string{"CLIENT", "ID"}, ":"},
		{[]string{"PING"}, "+PONG"},
		{[]string{"SCAN", "0"}, "*2"},
	} {
		r.send(cmd(tc.args...))
		got := r.reply()
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("read-only %q: %q, want %s…", tc.args, got, tc.want)
		}
	}
	r.send(cmd("MULTI"))
	r.send(cmd("GET", "rokey"))
	r.send(cmd("EXEC"))
	for _, want := range []string{"+OK", "+QUEUED", "*1", "$1", "v"} {
		if got := r.line(); got != want {
			t.Fatalf("MULTI GET EXEC: %q, want %q", got, want)
		}
	}
}

// TestCommandTableLoadedWhenClusterAnswers (issue 28, finding 7): when the cluster is not
// reachable at start, the command table is loaded once it answers, however late; until
// then a read-only user is refused what the built-in table does not know.
func TestCommandTableLoadedWhenClusterAnswers(t *testing.T) {
	c := sharedCluster(t)
	hold, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seed := hold.Addr().String()
	hold.Close() // nothing listens on the seed yet
	cfg := config.Default()
	cfg.ClusterSeeds = []string{seed}
	cfg.Listen = "127.0.0.1:0"
	cfg.SlotmapRefresh = 200 * time.Millisecond
	cfg.Users = []config.User{{Name: "ro", Password: "ropw", ReadOnly: true}}
	srv := proxy.NewServer(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	if err := srv.Start(ctx); err == nil {
		t.Fatal("Start succeeded without a reachable seed")
	}
	cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	defer ln.Close()
	r := dialRaw(t, ln.Addr().String())
	r.send(cmd("AUTH", "ro", "ropw"))
	if got := r.line(); got != "+OK" {
		t.Fatal(got)
	}
	r.send(cmd("ZRANDMEMBER", "late{1}"))
	if got := r.line(); !strings.HasPrefix(got, "-NOPERM") {
		t.Fatalf("ZRANDMEMBER before the table is loaded: %q", got)
	}
	// The seed comes up: a forwarder to a real node.
	fwd, err := net.Listen("tcp", seed)
	if err != nil {
		t.Skipf("seed port taken meanwhile: %v", err)
	}
	defer fwd.Close()
	go func() {
		for {
			a, err := fwd.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", c.Seeds()[0])
			if err != nil {
				a.Close()
				continue
			}
			go func() { io.Copy(a, b); a.Close() }()
			go func() { io.Copy(b, a); b.Close() }()
		}
	}()
	testutil.WaitFor(t, 20*time.Second, "ZRANDMEMBER to be allowed once the table is loaded", func() bool {
		r.send(cmd("ZRANDMEMBER", "late{1}"))
		return r.line() == "$-1"
	})
	r.send(cmd("ZRANGESTORE", "{z}dst", "{z}src", "0", "-1"))
	if got := r.line(); !strings.HasPrefix(got, "-NOPERM") {
		t.Fatalf("ZRANGESTORE after the table is loaded: %q", got)
	}
}

// TestConfigGetRedactsSecrets (issue 28, finding 6): CONFIG GET shows no password (the
// proxy's requirepass, the nodes' masterauth …) to anyone, and read-only users get no
// CONFIG at all.
func TestConfigGetRedactsSecrets(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, func(cfg *config.Config) {
		cfg.RequirePass = "s3cret-pw"
		cfg.Users = []config.User{{Name: "ro", Password: "ropw", ReadOnly: true}}
	})
	ctx := context.Background()
	rw := p.client(t, func(o *redis.Options) { o.Password = "s3cret-pw" })
	for _, pattern := range []string{"requirepass", "*"} {
		v, err := rw.ConfigGet(ctx, pattern).Result()
		if err != nil {
			t.Fatal(err)
		}
		if v["requirepass"] != "(redacted)" {
			t.Errorf("CONFIG GET %s: requirepass = %q", pattern, v["requirepass"])
		}
		for k, val := range v {
			if strings.Contains(val, "s3cret") || (strings.Contains(k, "pass") || k == "masterauth") && val != "" && val != "(redacted)" {
				t.Errorf("CONFIG GET %s: %s = %q", pattern, k, val)
			}
		}
		if _, ok := v["maxmemory"]; pattern == "*" && !ok {
			t.Errorf("CONFIG GET *: maxmemory missing")
		}
	}
	ro := p.client(t, func(o *redis.Options) { o.Username, o.Password = "ro", "ropw" })
	if err := ro.ConfigGet(ctx, "maxmemory").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Fatalf("read-only CONFIG GET: %v", err)
	}
}

// TestAdminRole (issue 28, finding 9): listing and killing other clients, the slow log and
// the hot keys are for admins (requirepass's default user, users flagged :admin, or
// read-write users with enable-admin-commands); other users get NOPERM.
func TestAdminRole(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, func(cfg *config.Config) {
		cfg.RequirePass = "s3cret"
		cfg.Users = []config.User{{Name: "app", Password: "apppw"}, {Name: "ops", Password: "opspw", Admin: true}}
	})
	auth := func(args ...string) *rawConn {
		r := dialRaw(t, p.addr)
		r.send(cmd(append([]string{"AUTH"}, args...)...))
		if got := r.line(); got != "+OK" {
			t.Fatal(got)
		}
		return r
	}
	victim := auth("app", "apppw")
	victim.send(cmd("CLIENT", "ID"))
	victimID := strings.TrimPrefix(victim.line(), ":")
	for _, who := range []*rawConn{auth("app", "apppw")} {
		for _, args := range [][]string{
			{"CLIENT", "LIST"}, {"CLIENT", "KILL", "ID", victimID}, {"SLOWLOG", "GET"}, {"SLOWLOG", "RESET"},
			{"SLOWLOG", "LEN"}, {"PROXY", "HOTKEYS"},
		} {
			who.send(cmd(args...))
			if got := who.line(); !strings.HasPrefix(got, "-NOPERM") {
				t.Errorf("non-admin %q: %q", args, got)
			}
		}
		who.send(cmd("CLIENT", "INFO")) // its own connection stays visible
		if got := who.reply(); !strings.Contains(got, "id=") {
			t.Errorf("CLIENT INFO: %q", got)
		}
	}
	victim.send("PING\r\n")
	if got := victim.line(); got != "+PONG" {
		t.Fatalf("victim after the refused kill: %q", got)
	}
	ops := auth("ops", "opspw")
	ops.send(cmd("CLIENT", "LIST"))
	if got := ops.reply(); !strings.Contains(got, "id="+victimID+" ") {
		t.Fatalf("admin CLIENT LIST: %q", got)
	}
	ops.send(cmd("SLOWLOG", "LEN"))
	if got := ops.line(); !strings.HasPrefix(got, ":") {
		t.Fatalf("admin SLOWLOG LEN: %q", got)
	}
	def := auth("s3cret")
	def.send(cmd("SLOWLOG", "LEN"))
	if got := def.line(); !strings.HasPrefix(got, ":") {
		t.Fatalf("requirepass (default user) SLOWLOG LEN: %q", got)
	}
	ops.send(cmd("CLIENT", "KILL", "ID", victimID))
	if got := ops.line(); got != ":1" {
		t.Fatalf("admin CLIENT KILL: %q", got)
	}
	victim.expectClosed()
	// With enable-admin-commands, read-write users are admins.
	cfg := *p.srv.Config()
	cfg.EnableAdminCommands = true
	p.srv.Reload(&cfg)
	app := auth("app", "apppw")
	app.send(cmd("SLOWLOG", "LEN"))
	if got := app.line(); !strings.HasPrefix(got, ":") {
		t.Fatalf("read-write user with enable-admin-commands: %q", got)
	}
}

// TestAuthFailuresLimited (issue 28, finding 5): failed AUTH attempts are counted, logged
// with the client's address at most once a second, and a connection is closed after
// auth-max-failures of them.
func TestAuthFailuresLimited(t *testing.T) {
	c := sharedCluster(t)
	transports(t, func(t *testing.T, start func(testing.TB, *testcluster.Cluster, func(*config.Config)) *testProxy) {
		p := start(t, c, func(cfg *config.Config) {
			cfg.RequirePass = "s3cret"
			cfg.AuthMaxFailures = 3
		})
		r := dialRaw(t, p.addr)
		r.send(cmd("AUTH", "guess1") + cmd("HELLO", "2", "AUTH", "default", "guess2") + cmd("AUTH", "guess3") + cmd("AUTH", "s3cret"))
		for _, want := range []string{"-WRONGPASS", "-WRONGPASS", "-ERR too many failed authentication attempts"} {
			if got := r.line(); !strings.HasPrefix(got, want) {
				t.Fatalf("got %q, want %s…", got, want)
			}
		}
		r.expectClosed()
		if v := testutil.MetricSum(t, p.reg, "redis_carp_proxy_auth_failures_total"); v != 3 {
			t.Fatalf("auth_failures_total = %v", v)
		}
		if v := testutil.MetricSum(t, p.reg, "redis_carp_proxy_client_connections_rejected_total", "reason", "auth_failures"); v != 1 {
			t.Fatalf("rejected{auth_failures} = %v", v)
		}
	})
	// The log: the client's address, at most one line a second however many failures.
	var logs testutil.SyncBuffer
	cfg := config.Default()
	cfg.ClusterSeeds = c.Seeds()[:1]
	cfg.RequirePass = "s3cret"
	cfg.AuthMaxFailures = 0
	srv := proxy.NewServer(cfg, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	defer ln.Close()
	r := dialRaw(t, ln.Addr().String())
	var b strings.Builder
	for i := 0; i < 2000; i++ {
		b.WriteString(cmd("AUTH", "guess"+strconv.Itoa(i)))
	}
	begin := time.Now()
	r.send(b.String())
	for i := 0; i < 2000; i++ {
		if got := r.line(); !strings.HasPrefix(got, "-WRONGPASS") {
			t.Fatalf("attempt %d: %q", i, got)
		}
	}
	elapsed := time.Since(begin)
	lines := strings.Count(logs.String(), "client authentication failed")
	if lines < 1 || float64(lines) > elapsed.Seconds()+2 {
		t.Fatalf("%d log lines for 2000 failures in %v", lines, elapsed)
	}
	if !strings.Contains(logs.String(), "addr=127.0.0.1:") {
		t.Fatalf("the log line lacks the client's address:\n%s", logs.String())
	}
}

// TestReloadDropsOrDowngradesUsers (issue 28, finding 10): after a reload, the open
// connections of a removed user are closed and those of a user made read-only can no
// longer write, on both transports (the event loops' fast path included).
func TestReloadDropsOrDowngradesUsers(t *testing.T) {
	c := sharedCluster(t)
	transports(t, func(t *testing.T, start func(testing.TB, *testcluster.Cluster, func(*config.Config)) *testProxy) {
		p := start(t, c, func(cfg *config.Config) {
			cfg.Users = []config.User{{Name: "gone", Password: "gpw"}, {Name: "demoted", Password: "dpw"}, {Name: "stays", Password: "spw"}}
		})
		conns := map[string]*rawConn{}
		for _, u := range []string{"gone", "demoted", "stays"} {
			r := dialRaw(t, p.addr)
			r.send(cmd("AUTH", u, u[:1]+"pw") + cmd("SET", "reload{"+u+"}", "1"))
			for _, want := range []string{"+OK", "+OK"} {
				if got := r.line(); got != want {
					t.Fatalf("%s: %q", u, got)
				}
			}
			conns[u] = r
		}
		cfg := *p.srv.Config()
		cfg.Users = []config.User{{Name: "demoted", Password: "dpw", ReadOnly: true}, {Name: "stays", Password: "spw"}}
		p.srv.Reload(&cfg)
		r := conns["gone"]
		r.send(cmd("GET", "reload{gone}"))
		if got := r.line(); !strings.HasPrefix(got, "-ERR the user of this connection was removed") {
			t.Fatalf("removed user: %q", got)
		}
		r.expectClosed()
		r = conns["demoted"]
		r.send(cmd("SET", "reload{demoted}", "2") + cmd("GET", "reload{demoted}"))
		for _, want := range []string{"-NOPERM", "$1", "1"} {
			if got := r.line(); !strings.HasPrefix(got, want) {
				t.Fatalf("user made read-only: %q, want %s…", got, want)
			}
		}
		r = conns["stays"]
		r.send(cmd("SET", "reload{stays}", "2"))
		if got := r.line(); got != "+OK" {
			t.Fatalf("unchanged user: %q", got)
		}
	})
}

// TestTLSOffersAEADOnly (issue 28, finding 18): the TLS listener refuses a TLS 1.2 client
// that offers only CBC-SHA1 suites and serves one offering AES-GCM.
func TestTLSOffersAEADOnly(t *testing.T) {
	c := sharedCluster(t)
	files, err := testcluster.WriteTLSFiles(t.TempDir(), "proxy")
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, c, nil)
	tlsAddr := serveTLS(t, p, files, false)
	base, err := files.Config()
	if err != nil {
		t.Fatal(err)
	}
	dial := func(suites ...uint16) error {
		cc := base.Clone()
		cc.MaxVersion, cc.CipherSuites = tls.VersionTLS12, suites
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tlsAddr, cc)
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		buf := make([]byte, 7)
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "+PONG\r\n" {
			return fmt.Errorf("PING: %q %v", buf, err)
		}
		return nil
	}
	if err := dial(tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA); err == nil {
		t.Fatal("a TLS 1.2 client offering only CBC-SHA1 suites was served")
	}
	if err := dial(tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256); err != nil {
		t.Fatalf("AES-GCM client: %v", err)
	}
}

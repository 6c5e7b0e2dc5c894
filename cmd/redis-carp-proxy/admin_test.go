package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/gate"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/handover"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// respConn is a raw RESP client that counts the bytes it sends and receives, so byte
// counters can be checked exactly.
type respConn struct {
	t          *testing.T
	c          net.Conn
	br         *bufio.Reader
	sent, recv int
}

type countReader struct {
	r io.Reader
	n *int
}

func (cr countReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	*cr.n += n
	return n, err
}

func dialRESP(t *testing.T, addr string) *respConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &respConn{t: t, c: c}
	rc.br = bufio.NewReader(countReader{c, &rc.recv})
	return rc
}

func encode(args ...string) []byte {
	b := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b = append(b, "$"+strconv.Itoa(len(a))+"\r\n"+a+"\r\n"...)
	}
	return b
}

// send writes commands in one write (a pipeline).
func (rc *respConn) send(cmds ...[]string) {
	rc.t.Helper()
	var b []byte
	for _, c := range cmds {
		b = append(b, encode(c...)...)
	}
	rc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	n, err := rc.c.Write(b)
	rc.sent += n
	if err != nil {
		rc.t.Fatal(err)
	}
}

// read reads one reply: "+OK" → "OK", errors keep their "-", bulk strings their content,
// nil is "(nil)", integers their digits, arrays are joined with spaces in brackets.
func (rc *respConn) read() string {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	line, err := rc.br.ReadString('\n')
	if err != nil {
		rc.t.Fatalf("read reply: %v", err)
	}
	line = strings.TrimSuffix(line, "\r\n")
	switch line[0] {
	case '+':
		return line[1:]
	case '-', ':':
		if line[0] == ':' {
			return line[1:]
		}
		return line
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "(nil)"
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rc.br, buf); err != nil {
			rc.t.Fatal(err)
		}
		return string(buf[:n])
	case '*':
		n, _ := strconv.Atoi(line[1:])
		parts := make([]string, 0, max(n, 0))
		for i := 0; i < n; i++ {
			parts = append(parts, rc.read())
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	rc.t.Fatalf("unexpected reply line %q", line)
	return ""
}

func (rc *respConn) do(args ...string) string {
	rc.t.Helper()
	rc.send(args)
	return rc.read()
}

// metrics is one parsed scrape of /metrics.
type metrics map[string]*dto.MetricFamily

func scrape(t *testing.T, base string) (metrics, []byte) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return metrics(mfs), body
}

// sum adds the values (counter, gauge) or observation counts (histogram) of the series
// of name that have the given labels.
func (ms metrics) sum(name string, labels ...string) float64 {
	return testutil.SeriesSum(ms["redis_carp_proxy_"+name], labels...)
}

// histSum adds the sums of the histogram series of name with the given labels.
func (ms metrics) histSum(name string, labels ...string) float64 {
	mf := ms["redis_carp_proxy_"+name]
	if mf == nil {
		return 0
	}
	var v float64
	for _, m := range mf.GetMetric() {
		if testutil.HasLabels(m, labels...) && m.Histogram != nil {
			v += m.GetHistogram().GetSampleSum()
		}
	}
	return v
}

// checkDeltas compares after-before for each (name, labels…) with want.
type delta struct {
	name   string
	labels []string
	want   float64
}

func checkDeltas(t *testing.T, phase string, before, after metrics, ds []delta) {
	t.Helper()
	for _, d := range ds {
		if got := after.sum(d.name, d.labels...) - before.sum(d.name, d.labels...); got != d.want {
			t.Errorf("%s: %s%v grew by %v, want %v", phase, d.name, d.labels, got, d.want)
		}
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// keyOn returns a key (with prefix) whose slot node serves, and its slot.
func keyOn(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, prefix string, avoid map[int]bool) (string, int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < 10000; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		s := command.KeySlot([]byte(k))
		if avoid[s] {
			continue
		}
		if o, err := c.OwnerOf(ctx, s); err == nil && o == n {
			avoid[s] = true
			return k, s
		}
	}
	t.Fatalf("no key on %s", n.Addr)
	return "", 0
}

const (
	testPassword = "Pw-must-not-be-logged-7Q"
	keyPrefix    = "keyname-must-not-be-logged-"
)

// TestAdminEndToEnd drives known traffic through a proxy against a real cluster, with a
// slot move (MOVED), a slot in migration (ASK), a stalled node (timeout), a slot the
// cluster stops serving (CLUSTERDOWN, incomplete coverage) and a killed node, and checks
// through the admin listener: exact counter deltas, moving histograms, /readyz following
// the host state and the slot coverage, promtool's lint of /metrics, and that the log
// has one line per transition and no password or key.
func TestAdminEndToEnd(t *testing.T) {
	e := startAdminE2E(t)
	e.healthAndReadiness()
	keys := e.knownTraffic()
	e.hotKeys(keys[0])
	e.movedSlot()
	e.askSlot()
	kt := e.stalledNode()
	e.unservedSlot()
	e.killedNode(kt)
	e.checkLogs()
}

// adminE2E is TestAdminEndToEnd's proxy (event-driven refreshes only, short timeouts, a
// password, every command sampled for hot keys) in front of a 3-master cluster, its
// admin listener, its log, and the raw client of the traffic.
type adminE2E struct {
	t       *testing.T
	ctx     context.Context
	c       *testcluster.Cluster
	masters []*testcluster.Node
	A, B, C *testcluster.Node
	cfg     *config.Config
	logs    *testutil.SyncBuffer
	srv     *proxy.Server
	admin   string // the admin listener's URL
	hs      sync.Mutex
	state   proxy.HostState
	ln      net.Listener
	rc      *respConn
	used    map[int]bool // slots of the keys used so far
	aID     string       // A's node ID
}

// startAdminE2E starts the cluster, the proxy with the daemon's metrics, its listener
// and its admin handler.
func startAdminE2E(t *testing.T) *adminE2E {
	c := testcluster.New(t, testcluster.Options{Replicas: -1})
	ctx := context.Background()
	masters, err := c.Masters(ctx)
	if err != nil || len(masters) != 3 {
		t.Fatalf("masters: %v %v", masters, err)
	}
	e := &adminE2E{t: t, ctx: ctx, c: c, masters: masters, A: masters[0], B: masters[1], C: masters[2], used: map[int]bool{}}

	cfg := config.Default()
	cfg.ClusterSeeds = c.Seeds()[:1]
	cfg.Listen = "127.0.0.1:0"
	cfg.SlotmapRefresh = 10 * time.Minute // only events refresh the map: MOVED must happen
	cfg.BackendReadTimeout = 1500 * time.Millisecond
	cfg.TryagainRetries = 2
	cfg.TryagainBackoff = 10 * time.Millisecond
	cfg.RequirePass = testPassword
	cfg.HotkeysSampleRate = 1
	e.cfg = cfg
	e.logs = &testutil.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("proxy log:\n%s", e.logs.String())
		}
	})

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gate.NewMetrics(reg) // as the daemon does: redis_carp_proxy_active is linted too
	e.srv = proxy.NewServer(cfg, log, reg)
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := e.srv.Start(sctx); err != nil {
		t.Fatal(err)
	}
	e.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(e.ln) }()
	t.Cleanup(func() {
		e.ln.Close()
		<-served
		e.srv.Close()
	})
	admin := httptest.NewServer(adminHandler(cfg, e.srv, reg, log))
	t.Cleanup(admin.Close)
	e.admin = admin.URL
	return e
}

// healthAndReadiness: /healthz, and /readyz following the host state (static, BACKUP,
// MASTER); no pprof unless enabled.
func (e *adminE2E) healthAndReadiness() {
	t := e.t
	if code, body := httpGet(t, e.admin+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, body := httpGet(t, e.admin+"/readyz"); code != 200 || !strings.Contains(body, "covers all 16384 slots") {
		t.Fatalf("/readyz with a static host state: %d %q", code, body)
	}
	e.state = proxy.HostState{CARP: "BACKUP", Active: false}
	e.srv.SetHostState(func() proxy.HostState { e.hs.Lock(); defer e.hs.Unlock(); return e.state })
	if code, body := httpGet(t, e.admin+"/readyz"); code != 503 || !strings.HasPrefix(body, "not active (CARP state BACKUP), slot map epoch ") || !strings.Contains(body, "covers all 16384 slots") {
		t.Fatalf("/readyz while BACKUP: %d %q", code, body)
	}
	e.hs.Lock()
	e.state = proxy.HostState{CARP: "MASTER", Active: true}
	e.hs.Unlock()
	if code, body := httpGet(t, e.admin+"/readyz"); code != 200 || !strings.HasPrefix(body, "active (CARP state MASTER)") {
		t.Fatalf("/readyz while MASTER: %d %q", code, body)
	}
	if code, _ := httpGet(t, e.admin+"/debug/pprof/"); code != 404 {
		t.Errorf("/debug/pprof/ with admin-pprof no: %d", code)
	}
}

// knownTraffic is phase 1: known traffic on a fresh client connection (AUTH, SETs, GETs,
// unknown commands, WRONGTYPE errors, a pipeline) gives exact counter deltas and moving
// histograms, and /metrics passes promtool. It returns the keys written.
func (e *adminE2E) knownTraffic() []string {
	t, c, masters, admin := e.t, e.c, e.masters, e.admin
	var keys []string
	for i, n := range masters {
		for j := 0; j < 7; j++ {
			k, _ := keyOn(t, c, n, fmt.Sprintf("%s%d-%d-", keyPrefix, i, j), e.used)
			keys = append(keys, k)
		}
	}
	keys = keys[:20]
	before, _ := scrape(t, admin)
	e.rc = dialRESP(t, e.ln.Addr().String())
	rc := e.rc
	e.sendKnownTraffic(keys)
	after, body := scrape(t, admin)
	const forwarded = 20 + 20 + 5 + 3 + 2 + 10 // everything but AUTH and PING
	const commands = 2 + forwarded + 3
	checkDeltas(t, "traffic", before, after, []delta{
		{"commands_total", []string{"command", "auth", "result", "error"}, 1},
		{"commands_total", []string{"command", "auth", "result", "ok"}, 1},
		{"commands_total", []string{"command", "set", "result", "ok"}, 20},
		{"commands_total", []string{"command", "get", "result", "ok"}, 35},
		{"commands_total", []string{"command", "ping", "result", "ok"}, 3},
		{"commands_total", []string{"command", "other", "result", "error"}, 3},
		{"commands_total", []string{"command", "lpush", "result", "error"}, 2},
		{"commands_total", nil, commands},
		{"command_duration_seconds", []string{"command", "get"}, 35},
		{"command_duration_seconds", nil, commands},
		{"backend_request_duration_seconds", nil, forwarded},
		{"redirections_total", nil, 0},
		{"backend_errors_total", nil, 0},
		{"client_connections_accepted_total", nil, 1},
		{"client_connections", nil, 1},
		{"client_received_bytes_total", nil, float64(rc.sent)},
		{"client_sent_bytes_total", nil, float64(rc.recv)},
		{"backend_pending_requests", nil, 0},
	})
	if got := after.histSum("client_pipeline_depth") - before.histSum("client_pipeline_depth"); got != commands {
		t.Errorf("client_pipeline_depth sum grew by %v, want %d (every command read once)", got, commands)
	}
	if after.histSum("command_duration_seconds", "command", "get") <= before.histSum("command_duration_seconds", "command", "get") {
		t.Error("command_duration_seconds{command=get} sum did not grow")
	}
	for _, n := range masters {
		if got := after.sum("backend_request_duration_seconds", "node", n.Addr) - before.sum("backend_request_duration_seconds", "node", n.Addr); got < 7 {
			t.Errorf("backend_request_duration_seconds{node=%s} grew by %v, want at least the 7 SETs and GETs of its keys", n.Addr, got)
		}
	}
	if got := after.sum("backend_nodes"); got != 3 {
		t.Errorf("backend_nodes = %v, want 3", got)
	}
	if got := after.sum("slotmap_slots_covered"); got != 16384 {
		t.Errorf("slotmap_slots_covered = %v", got)
	}
	if after.sum("build_info", "version", proxy.Version) != 1 {
		t.Error("build_info missing")
	}
	promtoolCheckMetrics(t, body)
	return keys
}

// sendKnownTraffic sends phase 1's traffic on e.rc: a refused and an accepted AUTH, a SET
// and a GET of every key, 5 GETs of missing keys, 3 PINGs and 3 unknown commands, 2
// WRONGTYPE errors, and a pipeline of 10 GETs of keys[0].
func (e *adminE2E) sendKnownTraffic(keys []string) {
	t, rc := e.t, e.rc
	if r := rc.do("AUTH", "wrong-"+testPassword); !strings.HasPrefix(r, "-WRONGPASS") {
		t.Fatalf("AUTH with a wrong password: %q", r)
	}
	if r := rc.do("AUTH", testPassword); r != "OK" {
		t.Fatalf("AUTH: %q", r)
	}
	for _, k := range keys {
		if r := rc.do("SET", k, "v-"+k); r != "OK" {
			t.Fatalf("SET %s: %q", k, r)
		}
	}
	for _, k := range keys {
		if r := rc.do("GET", k); r != "v-"+k {
			t.Fatalf("GET %s: %q", k, r)
		}
	}
	for i := 0; i < 5; i++ {
		if r := rc.do("GET", fmt.Sprintf("%smissing%d", keyPrefix, i)); r != "(nil)" {
			t.Fatalf("GET missing: %q", r)
		}
	}
	for i := 0; i < 3; i++ {
		if r := rc.do("PING"); r != "PONG" {
			t.Fatalf("PING: %q", r)
		}
		if r := rc.do(fmt.Sprintf("NOSUCHCMD%d", i), keyPrefix); !strings.HasPrefix(r, "-ERR unknown command") {
			t.Fatalf("unknown command: %q", r)
		}
	}
	for i := 0; i < 2; i++ {
		if r := rc.do("LPUSH", keys[i], "x"); !strings.HasPrefix(r, "-WRONGTYPE") {
			t.Fatalf("LPUSH on a string: %q", r)
		}
	}
	pipe := make([][]string, 10)
	for i := range pipe {
		pipe[i] = []string{"GET", keys[0]}
	}
	rc.send(pipe...)
	for range pipe {
		if r := rc.read(); r != "v-"+keys[0] {
			t.Fatalf("pipelined GET: %q", r)
		}
	}
}

// hotKeys: /debug/hotkeys names the key read most (hot), and refuses n=0.
func (e *adminE2E) hotKeys(hot string) {
	t := e.t
	if code, body := httpGet(t, e.admin+"/debug/hotkeys?n=1"); code != 200 || !strings.HasSuffix(body, " "+strconv.Quote(hot)+"\n") {
		t.Errorf("/debug/hotkeys?n=1: %d %q, want %s (GET 11 times)", code, body, hot)
	}
	if code, _ := httpGet(t, e.admin+"/debug/hotkeys?n=0"); code != 400 {
		t.Errorf("/debug/hotkeys?n=0: %d, want 400", code)
	}
}

// movedSlot is phase 2: a slot moved behind the proxy's back gives exactly one MOVED and
// one refresh.
func (e *adminE2E) movedSlot() {
	t, c, ctx, rc, admin, A, B := e.t, e.c, e.ctx, e.rc, e.admin, e.A, e.B
	km, sm := keyOn(t, c, A, keyPrefix+"moved-", e.used)
	if r := rc.do("SET", km, "m"); r != "OK" {
		t.Fatal(r)
	}
	before, _ := scrape(t, admin)
	if err := c.MoveSlots(ctx, []int{sm}, B); err != nil {
		t.Fatal(err)
	}
	if r := rc.do("GET", km); r != "m" {
		t.Fatalf("GET after the slot moved: %q", r)
	}
	testutil.WaitFor(t, 10*time.Second, "the refresh triggered by MOVED", func() bool {
		m, _ := scrape(t, admin)
		return m.sum("slotmap_refreshes_total", "trigger", "moved") > before.sum("slotmap_refreshes_total", "trigger", "moved")
	})
	after, _ := scrape(t, admin)
	checkDeltas(t, "MOVED", before, after, []delta{
		{"redirections_total", []string{"type", "moved", "node", A.Addr}, 1},
		{"redirections_total", nil, 1},
		{"commands_total", []string{"command", "get", "result", "redirected"}, 1},
		{"commands_total", nil, 1},
		{"slotmap_refreshes_total", []string{"trigger", "moved", "result", "ok"}, 1},
		{"slotmap_epoch", nil, 1},
		{"backend_request_duration_seconds", []string{"node", A.Addr}, 1},
		{"backend_request_duration_seconds", []string{"node", B.Addr}, 1},
	})
}

// askSlot is phase 3: a slot in migration gives exactly one ASK and leaves the map alone;
// the slot then moves to B for good.
func (e *adminE2E) askSlot() {
	t, c, ctx, rc, admin, A, B, C := e.t, e.c, e.ctx, e.rc, e.admin, e.A, e.B, e.C
	ka, sa := keyOn(t, c, A, keyPrefix+"ask-", e.used)
	if r := rc.do("SET", ka, "a"); r != "OK" {
		t.Fatal(r)
	}
	e.aID, _ = c.Client(A).Do(ctx, "CLUSTER", "MYID").Text()
	bID, _ := c.Client(B).Do(ctx, "CLUSTER", "MYID").Text()
	for _, step := range []struct {
		n    *testcluster.Node
		args []any
	}{
		{B, []any{"CLUSTER", "SETSLOT", sa, "IMPORTING", e.aID}},
		{A, []any{"CLUSTER", "SETSLOT", sa, "MIGRATING", bID}},
		{A, []any{"MIGRATE", "127.0.0.1", B.Port, "", 0, 5000, "KEYS", ka}},
	} {
		if err := c.Client(step.n).Do(ctx, step.args...).Err(); err != nil {
			t.Fatalf("%v on %s: %v", step.args, step.n.Addr, err)
		}
	}
	before, _ := scrape(t, admin)
	if r := rc.do("GET", ka); r != "a" {
		t.Fatalf("GET of a migrated key: %q", r)
	}
	after, _ := scrape(t, admin)
	checkDeltas(t, "ASK", before, after, []delta{
		{"redirections_total", []string{"type", "ask", "node", A.Addr}, 1},
		{"redirections_total", nil, 1},
		{"commands_total", []string{"command", "get", "result", "redirected"}, 1},
		{"slotmap_refreshes_total", nil, 0},
		{"slotmap_epoch", nil, 0},
	})
	for _, n := range []*testcluster.Node{B, A, C} {
		if err := c.Client(n).Do(ctx, "CLUSTER", "SETSLOT", sa, "NODE", bID).Err(); err != nil {
			t.Fatalf("SETSLOT NODE on %s: %v", n.Addr, err)
		}
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
}

// stalledNode is phase 4: a stalled node (CLIENT PAUSE) shows the pending request, then
// exactly one timeout; the node answers again afterwards. It returns the key used, on C.
func (e *adminE2E) stalledNode() string {
	t, c, ctx, rc, admin, C, cfg := e.t, e.c, e.ctx, e.rc, e.admin, e.C, e.cfg
	kt, _ := keyOn(t, c, C, keyPrefix+"stall-", e.used)
	if r := rc.do("SET", kt, "t"); r != "OK" {
		t.Fatal(r)
	}
	before, _ := scrape(t, admin)
	const pause = 2500 * time.Millisecond // longer than backend-read-timeout plus the watchdog's tick
	if err := c.Pause(ctx, C, pause); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	rc.send([]string{"GET", kt})
	sawPending := false
	for time.Since(paused) < cfg.BackendReadTimeout && !sawPending {
		m, _ := scrape(t, admin)
		sawPending = m.sum("backend_pending_requests", "node", C.Addr) == 1
	}
	if r := rc.read(); !strings.Contains(r, "did not answer in time") {
		t.Fatalf("GET on a paused node: %q", r)
	}
	if !sawPending {
		t.Error("backend_pending_requests never showed the command waiting on the paused node")
	}
	after, _ := scrape(t, admin)
	checkDeltas(t, "timeout", before, after, []delta{
		{"backend_errors_total", []string{"node", C.Addr, "kind", "timeout"}, 1},
		{"commands_total", []string{"command", "get", "result", "error"}, 1},
		{"backend_pending_requests", nil, 0},
	})
	// Only after the pause: a command sent during it could time out too.
	time.Sleep(time.Until(paused.Add(pause + 200*time.Millisecond)))
	testutil.WaitFor(t, 10*time.Second, "the paused node to answer again", func() bool { return rc.do("GET", kt) == "t" })
	return kt
}

// unservedSlot is phase 5: the cluster stops serving a slot: CLUSTERDOWN after the
// retries, the coverage gauge, /readyz and INFO proxy report it, and they recover.
func (e *adminE2E) unservedSlot() {
	t, c, ctx, rc, admin, masters, A, B, C := e.t, e.c, e.ctx, e.rc, e.admin, e.masters, e.A, e.B, e.C
	kd, sd := keyOn(t, c, A, keyPrefix+"down-", e.used)
	before, _ := scrape(t, admin)
	for _, n := range masters {
		if err := c.Client(n).Do(ctx, "CLUSTER", "DELSLOTS", sd).Err(); err != nil {
			t.Fatalf("DELSLOTS on %s: %v", n.Addr, err)
		}
	}
	if r := rc.do("GET", kd); !strings.HasPrefix(r, "-CLUSTERDOWN") {
		t.Fatalf("GET on an unserved slot: %q", r)
	}
	testutil.WaitFor(t, 10*time.Second, "/readyz to report the incomplete slot map", func() bool {
		code, body := httpGet(t, admin+"/readyz")
		return code == 503 && strings.Contains(body, "slot map incomplete: the cluster serves 16383 of 16384 slots")
	})
	after, _ := scrape(t, admin)
	checkDeltas(t, "CLUSTERDOWN", before, after, []delta{
		{"redirections_total", []string{"type", "clusterdown", "node", A.Addr}, 3}, // first try and tryagain-retries 2
		{"commands_total", []string{"command", "get", "result", "error"}, 1},
	})
	if got := after.sum("slotmap_slots_covered"); got != 16383 {
		t.Errorf("slotmap_slots_covered = %v, want 16383", got)
	}
	if after.sum("slotmap_refreshes_total", "result", "error") == 0 {
		t.Error("no failed refresh counted")
	}
	if info := rc.do("INFO", "proxy"); !strings.Contains(info, "slots_covered:16383") || !strings.Contains(info, "carp_state:MASTER") {
		t.Errorf("INFO proxy with an incomplete cluster:\n%s", info)
	}
	if err := c.Client(A).Do(ctx, "CLUSTER", "ADDSLOTS", sd).Err(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testcluster.Node{B, C} {
		c.Client(n).Do(ctx, "CLUSTER", "SETSLOT", sd, "NODE", e.aID) // gossip would do it too
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "/readyz to recover", func() bool {
		code, _ := httpGet(t, admin+"/readyz")
		return code == 200
	})
}

// killedNode is phase 6: every command for a killed node (C, holding kt) is an error
// reply, counted once; a refresh follows and INFO proxy shows the node down.
func (e *adminE2E) killedNode(kt string) {
	t, c, rc, admin, C := e.t, e.c, e.rc, e.admin, e.C
	before, _ := scrape(t, admin)
	if err := c.Kill(C); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if r := rc.do("GET", kt); !strings.HasPrefix(r, "-ERR proxy:") {
			t.Fatalf("GET on a killed node: %q", r)
		}
	}
	after, _ := scrape(t, admin)
	checkDeltas(t, "kill", before, after, []delta{
		{"commands_total", []string{"command", "get", "result", "error"}, 2},
		{"commands_total", nil, 2},
	})
	if after.sum("backend_errors_total", "node", C.Addr) == before.sum("backend_errors_total", "node", C.Addr) {
		t.Error("backend_errors_total for the killed node did not grow")
	}
	// Requests made while one is pending are coalesced into it, so the refresh counts under
	// whichever came first: the lost connections or the retries of the commands not sent.
	testutil.WaitFor(t, 10*time.Second, "a refresh triggered by the connection loss", func() bool {
		m, _ := scrape(t, admin)
		grew := func(trigger string) bool {
			return m.sum("slotmap_refreshes_total", "trigger", trigger) > before.sum("slotmap_refreshes_total", "trigger", trigger)
		}
		return grew("connection_loss") || grew("unreachable")
	})
	testutil.WaitFor(t, 5*time.Second, "INFO proxy to show the killed node down", func() bool {
		return strings.Contains(rc.do("INFO", "proxy"), "addr="+C.Addr+",role=master,state=down")
	})
}

// checkLogs: one line per transition or error, with context; never a password or a key.
func (e *adminE2E) checkLogs() {
	t := e.t
	out := e.logs.String()
	for _, secret := range []string{testPassword, keyPrefix} {
		if strings.Contains(out, secret) {
			t.Errorf("log output contains %q:\n%s", secret, out)
		}
	}
	for _, want := range []struct {
		msg   string
		with  string
		count int
	}{
		{"client authentication failed", `"client_id":`, 1},
		{"backend connection failed", `"reason":"timeout"`, 1},
		{"slot map refresh failed; keeping the last good map", `"err":`, 1},
		{"slot map refresh works again", `"failed_attempts":`, 1},
		{"cluster node unreachable", `"node":"` + e.C.Addr + `"`, 1},
	} {
		n := 0
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, `"msg":"`+want.msg+`"`) && strings.Contains(line, want.with) && strings.Contains(line, `"component":"proxy"`) {
				n++
			}
		}
		if n != want.count {
			t.Errorf("%d log lines %q with %s, want %d:\n%s", n, want.msg, want.with, want.count, out)
		}
	}
}

// promtoolCheckMetrics lints a /metrics body with promtool check metrics.
func promtoolCheckMetrics(t *testing.T, body []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed (Debian package prometheus; tools/install-deps.sh installs it): /metrics not linted")
		return
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestAdminPprofOnlyWhenEnabled(t *testing.T) {
	cfg := config.Default()
	srv := proxy.NewServer(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	reg := prometheus.NewRegistry()
	for _, on := range []bool{false, true} {
		cfg.AdminPprof = on
		h := httptest.NewServer(adminHandler(cfg, srv, reg, slog.New(slog.NewTextHandler(io.Discard, nil))))
		code, _ := httpGet(t, h.URL+"/debug/pprof/")
		h.Close()
		if want := map[bool]int{false: 404, true: 200}[on]; code != want {
			t.Errorf("admin-pprof %v: /debug/pprof/ answered %d, want %d", on, code, want)
		}
	}
	h := httptest.NewServer(adminHandler(cfg, srv, reg, slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer h.Close()
	if code, body := httpGet(t, h.URL+"/readyz"); code != 503 || body != "active (CARP state static), no slot map loaded: cluster not reachable yet\n" {
		t.Errorf("/readyz before any slot map: %d %q", code, body)
	}
}

// TestDaemonAdminReportsHostState runs the daemon in static mode and checks that its admin
// listener and INFO see the gate's state: /readyz, INFO proxy and the active metric.
func TestDaemonAdminReportsHostState(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Replicas: -1})
	addr, admin := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runDaemon(ctx, []string{"--listen", addr, "--cluster-seeds", strings.Join(c.Seeds(), ","),
			"--admin-listen", admin, "--shutdown-timeout", "1s"}, io.Discard)
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("daemon did not stop")
		}
	}()
	var code int
	var body string
	testutil.WaitFor(t, 15*time.Second, "the daemon to be ready", func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, body = resp.StatusCode, string(b)
		return code == 200
	})
	if !strings.HasPrefix(body, "active (CARP state static), slot map epoch ") {
		t.Errorf("/readyz: %q", body)
	}
	rc := dialRESP(t, addr)
	if info := rc.do("INFO", "proxy"); !strings.Contains(info, "carp_state:static\r\nactive:1\r\n") {
		t.Errorf("INFO proxy of the daemon:\n%s", info)
	}
	m, _ := scrape(t, "http://"+admin)
	if m.sum("active") != 1 || m.sum("carp_state") != 2 {
		t.Errorf("active = %v, carp_state = %v; want 1 and 2 (MASTER)", m.sum("active"), m.sum("carp_state"))
	}
}

// TestAdminDebugLoopbackOnly (issue 28, finding 13): /debug/hotkeys and pprof answer
// loopback clients only, pprof never serves the command line, and the HTTP server has
// read, write and idle timeouts.
func TestAdminDebugLoopbackOnly(t *testing.T) {
	cfg := config.Default()
	cfg.AdminPprof = true
	srv := proxy.NewServer(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	h := adminHandler(cfg, srv, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	get := func(path, remote string) int {
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for _, path := range []string{"/debug/hotkeys", "/debug/pprof/", "/debug/pprof/symbol"} {
		if code := get(path, "198.51.100.7:40000"); code != 403 {
			t.Errorf("%s from 198.51.100.7: %d, want 403", path, code)
		}
		for _, lo := range []string{"127.0.0.1:40000", "[::1]:40000"} {
			if code := get(path, lo); code != 200 {
				t.Errorf("%s from %s: %d, want 200", path, lo, code)
			}
		}
	}
	if code := get("/metrics", "198.51.100.7:40000"); code != 200 {
		t.Errorf("/metrics from elsewhere: %d", code)
	}
	if code := get("/debug/pprof/cmdline", "127.0.0.1:40000"); code != 404 {
		t.Errorf("/debug/pprof/cmdline: %d, want 404 (the command line may hold a password)", code)
	}
	hs := adminServer(context.Background(), h)
	if hs.ReadTimeout <= 0 || hs.WriteTimeout <= 0 || hs.IdleTimeout <= 0 || hs.ReadHeaderTimeout <= 0 {
		t.Errorf("admin HTTP server timeouts: %+v", hs)
	}
}

// The hold of a planned handover delays every client of a VIP: /handover/hold and
// /handover/release answer POST only, to this host (loopback, or the address the request
// reached) and to the hosts of handover-peers, never to another host.
func TestAdminHoldForThisHostAndPeersOnly(t *testing.T) {
	cfg := config.Default()
	cfg.HandoverPeers = []string{"198.51.100.2:9479"}
	srv := proxy.NewServer(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	srv.Endpoint("198.51.100.100")
	h := adminHandler(cfg, srv, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	do := func(method, path, remote, local string) (int, string) {
		req := httptest.NewRequest(method, path, nil)
		req.RemoteAddr = remote
		if local != "" {
			req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(local))))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	const hold = "/handover/hold?vip=198.51.100.100&for=200ms&settle=1ms"
	for _, tc := range []struct {
		method, path, remote, local string
		code                        int
	}{
		{"POST", hold, "198.51.100.7:40000", "198.51.100.1:9479", 403}, // another host
		{"POST", "/handover/release?vip=198.51.100.100", "198.51.100.7:40000", "", 403},
		{"POST", hold, "127.0.0.1:40000", "", 200},                     // this host, loopback
		{"POST", hold, "198.51.100.1:40000", "198.51.100.1:9479", 200}, // this host, its own address
		{"POST", hold, "198.51.100.2:40000", "198.51.100.1:9479", 200}, // a handover peer
		{"GET", hold, "127.0.0.1:40000", "", 405},
		{"POST", "/handover/hold?vip=198.51.100.9", "127.0.0.1:40000", "", 404},
		{"POST", "/handover/hold?vip=198.51.100.100&for=11s", "127.0.0.1:40000", "", 400},
		{"POST", "/handover/hold?vip=198.51.100.100&for=-1s", "127.0.0.1:40000", "", 400},
		{"POST", "/handover/release?vip=198.51.100.100", "198.51.100.2:40000", "", 200},
	} {
		code, body := do(tc.method, tc.path, tc.remote, tc.local)
		if code != tc.code {
			t.Errorf("%s %s from %s: %d %q, want %d", tc.method, tc.path, tc.remote, code, body, tc.code)
		}
		if code == 200 && strings.HasPrefix(tc.path, "/handover/hold") {
			if _, err := handover.ParseHold(body); err != nil {
				t.Errorf("hold answer: %v", err)
			}
		}
	}
}

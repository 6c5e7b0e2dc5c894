package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

func TestKeySlotAgreesWithCluster(t *testing.T) {
	c := sharedCluster(t)
	ctx := context.Background()
	node := c.Client(c.Nodes[0])
	keys := []string{"", "{", "}", "{}", "}{", "{a}{b}", "{{a}}", "a{b}c", "{}{a}", "\x00\xff{\x01}", "foo", "{user1000}.following"}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 3000; i++ {
		b := make([]byte, r.IntN(20))
		for j := range b {
			b[j] = "ab{}\x00\xffxyz"[r.IntN(9)]
		}
		keys = append(keys, string(b))
	}
	pipe := node.Pipeline()
	cmds := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.ClusterKeySlot(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if got, want := command.KeySlot([]byte(k)), int(cmds[i].Val()); got != want {
			t.Errorf("command.KeySlot(%q) = %d, CLUSTER KEYSLOT says %d", k, got, want)
		}
	}
}

func TestEveryDataTypeAcrossSlots(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	cl := p.client(t)
	ctx := context.Background()
	const n = 10000
	prefix := fmt.Sprintf("dt%d:", rand.Int())
	pipe := cl.Pipeline()
	flush := func() {
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		k := prefix + strconv.Itoa(i)
		switch i % 6 {
		case 0:
			pipe.Set(ctx, k, "v"+k, 0)
		case 1:
			pipe.HSet(ctx, k, "f1", k, "f2", i)
		case 2:
			pipe.RPush(ctx, k, "a", k, "c")
		case 3:
			pipe.SAdd(ctx, k, "x", k)
		case 4:
			pipe.ZAdd(ctx, k, redis.Z{Score: float64(i), Member: k})
		case 5:
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: k, ID: "1-1", Values: []string{"f", k}})
		}
		if i%1000 == 999 {
			flush()
		}
	}
	flush()
	slots := map[int]bool{}
	for i := 0; i < n; i++ {
		k := prefix + strconv.Itoa(i)
		slots[command.KeySlot([]byte(k))] = true
	}
	if len(slots) < 4000 {
		t.Fatalf("keys cover only %d slots", len(slots))
	}
	for i := 0; i < n; i++ {
		k := prefix + strconv.Itoa(i)
		var err error
		var ok bool
		switch i % 6 {
		case 0:
			var v string
			v, err = cl.Get(ctx, k).Result()
			ok = v == "v"+k
		case 1:
			var v map[string]string
			v, err = cl.HGetAll(ctx, k).Result()
			ok = v["f1"] == k && v["f2"] == strconv.Itoa(i)
		case 2:
			var v []string
			v, err = cl.LRange(ctx, k, 0, -1).Result()
			ok = len(v) == 3 && v[1] == k
		case 3:
			var v bool
			v, err = cl.SIsMember(ctx, k, k).Result()
			ok = v
		case 4:
			var v float64
			v, err = cl.ZScore(ctx, k, k).Result()
			ok = v == float64(i)
		case 5:
			var v []redis.XMessage
			v, err = cl.XRange(ctx, k, "-", "+").Result()
			ok = len(v) == 1 && v[0].Values["f"] == k
		}
		if err != nil || !ok {
			t.Fatalf("key %s (type %d): err %v, value mismatch=%v", k, i%6, err, !ok)
		}
	}
}

func TestPipelineAnsweredInOrder(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	cl := p.client(t)
	ctx := context.Background()
	prefix := fmt.Sprintf("po%d:", rand.Int())
	pipe := cl.Pipeline()
	var cmds []redis.Cmder
	for i := 0; i < 1000; i++ {
		k := prefix + strconv.Itoa(i%97)
		switch i % 3 {
		case 0:
			cmds = append(cmds, pipe.Incr(ctx, k))
		case 1:
			cmds = append(cmds, pipe.Get(ctx, k))
		case 2:
			cmds = append(cmds, pipe.Echo(ctx, strconv.Itoa(i)))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for i, cmd := range cmds {
		k := prefix + strconv.Itoa(i%97)
		switch i % 3 {
		case 0:
			counts[k]++
			if got := cmd.(*redis.IntCmd).Val(); got != counts[k] {
				t.Fatalf("cmd %d INCR %s = %d, want %d", i, k, got, counts[k])
			}
		case 1:
			want := strconv.FormatInt(counts[k], 10)
			if counts[k] == 0 {
				want = "" // nil reply: the key does not exist yet
			}
			if got := cmd.(*redis.StringCmd).Val(); got != want {
				t.Fatalf("cmd %d GET %s = %s, want %d", i, k, got, counts[k])
			}
		case 2:
			if got := cmd.(*redis.StringCmd).Val(); got != strconv.Itoa(i) {
				t.Fatalf("cmd %d ECHO = %s", i, got)
			}
		}
	}
}

// TestPipelineFastThenSlowInOrder: a command the proxy runs on its slow path (EVAL, a
// transaction) uses other connections than the pipelined commands before it; it must still
// see their effect, as on a single Redis.
func TestPipelineFastThenSlowInOrder(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	cl := p.client(t)
	ctx := context.Background()
	k := fmt.Sprintf("{fs%d}", rand.Int())
	pipe := cl.Pipeline()
	var reads []*redis.Cmd
	for i := 0; i < 300; i++ {
		pipe.Set(ctx, k, i, 0)
		if i%2 == 0 {
			reads = append(reads, pipe.Eval(ctx, "return redis.call('get', KEYS[1])", []string{k}))
			continue
		}
		pipe.Do(ctx, "MULTI")
		pipe.Do(ctx, "GET", k)
		reads = append(reads, pipe.Do(ctx, "EXEC"))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil { // nil: checked below
		t.Fatal(err)
	}
	for i, r := range reads {
		got := fmt.Sprint(r.Val())
		if i%2 == 1 {
			got = strings.Trim(got, "[]")
		}
		if got != strconv.Itoa(i) {
			t.Fatalf("command %d (%v) read %q, want %d: it overtook the SET before it", i, r.Args()[0], got, i)
		}
	}
}

func TestConcurrentClients(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	ctx := context.Background()
	prefix := fmt.Sprintf("cc%d:", rand.Int())
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cl := redis.NewClient(&redis.Options{Addr: p.addr, PoolSize: 1, MaxRetries: -1, DisableIdentity: true})
			defer cl.Close()
			for i := 0; i < 300; i++ {
				k := fmt.Sprintf("%s%d:%d", prefix, w, i%20)
				if err := cl.Set(ctx, k, i, 0).Err(); err != nil {
					errs <- err
					return
				}
				v, err := cl.Get(ctx, k).Int()
				if err != nil || v != i {
					errs <- fmt.Errorf("client %d: GET %s = %d, %v; want %d (read-your-writes)", w, k, v, err, i)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// rawConn is a RESP connection for checking exact bytes.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

// floodInline streams one never-ending inline line (at most 8 MiB, 1 KiB per write, each
// write bounded by 5 s) until a write fails, and returns what was written and the failure
// (nil: all 8 MiB were taken).
func (r *rawConn) floodInline() (int, error) {
	chunk := bytes.Repeat([]byte("x"), 1024)
	sent := 0
	for sent < 8<<20 {
		r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		n, err := r.c.Write(chunk)
		sent += n
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

func dialRaw(t testing.TB, addr string) *rawConn {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) send(s string) {
	r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

// line reads one line (without CRLF), failing the test after a timeout.
func (r *rawConn) line() string {
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := r.br.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (r *rawConn) expectClosed() {
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := r.br.ReadByte()
	if err == nil {
		r.t.Fatalf("connection still open, read %q", b)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatal("connection not closed within 5s")
	}
}

func TestLocalCommandsAndInline(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	r := dialRaw(t, p.addr)
	steps := []struct{ send, want string }{
		{"PING\r\n", "+PONG"},
		{"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n", "$2"},
		{"", "hi"},
		{"ECHO \"a b\"\r\n", "$3"},
		{"", "a b"},
		{"SELECT 0\r\n", "+OK"},
		{"SELECT 3\r\n", "-ERR DB index is out of range"},
		{"HELLO 4\r\n", "-NOPROTO unsupported protocol version"}, // HELLO 3: resp3_test.go
		{"HELLO 2\r\n", "*14"},
	}
	for _, s := range steps {
		if s.send != "" {
			r.send(s.send)
		}
		if got := r.line(); got != s.want {
			t.Fatalf("after %q: got %q, want %q", s.send, got, s.want)
		}
	}
	for i := 0; i < 25; i++ { // rest of the HELLO map: 7 pairs, 3 of them one-line values
		r.line()
	}
	r.send("SET inl{1} \"v 1\"\r\nGET inl{1}\r\nCONFIG SET x y\r\nSHUTDOWN\r\nMSETNX a 1 b 2\r\n")
	for _, want := range []string{"+OK", "$3", "v 1", "-ERR CONFIG SET is disabled by the proxy (set enable-admin-commands yes)", "-ERR SHUTDOWN would stop one node of the cluster behind the proxy (to stop a node whose script cannot be killed, UNKILLABLE, send SHUTDOWN NOSAVE to that node directly): not supported by the proxy", "-CROSSSLOT Keys in request don't hash to the same slot"} {
		if got := r.line(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	r.send("QUIT\r\nPING\r\n")
	if got := r.line(); got != "+OK" {
		t.Fatalf("QUIT: %q", got)
	}
	r.expectClosed()
}

func TestProtocolErrorsCloseOnlyThatClient(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, func(cfg *config.Config) {
		cfg.ProtoMaxBulkLen = 1 << 20
		cfg.ProtoInlineMaxSize = 1024
	})
	other := p.client(t)
	ctx := context.Background()
	for _, tc := range []struct{ in, want string }{
		{"*1\r\n$3000000000\r\n", "-ERR Protocol error: invalid bulk length"},
		{"*1\r\n$-7\r\n", "-ERR Protocol error: invalid bulk length"},
		{"*abc\r\n", "-ERR Protocol error: invalid multibulk length"},
		{"*99999999\r\n", "-ERR Protocol error: invalid multibulk length"},
		{"*1\r\n:1\r\n", "-ERR Protocol error: expected '$', got ':'"},
		{"*2\r\n$3\r\nGETxx", "-ERR Protocol error: expected CRLF after bulk string"},
		{strings.Repeat("x", 5000), "-ERR Protocol error: too big inline request"},
		{"SET a \"unbalanced\r\n", "-ERR Protocol error: unbalanced quotes in request"},
		{"\x00\x01\xfe\xff garbage\r\n", "-ERR unknown command"},
	} {
		r := dialRaw(t, p.addr)
		r.send("PING\r\n" + tc.in)
		if got := r.line(); got != "+PONG" {
			t.Fatalf("%q: first reply %q", tc.in, got)
		}
		if got := r.line(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%.20q: got %q, want prefix %q", tc.in, got, tc.want)
		}
		if strings.Contains(tc.want, "Protocol error") {
			r.expectClosed()
		}
		if err := other.Ping(ctx).Err(); err != nil {
			t.Fatalf("other client affected: %v", err)
		}
	}
}

func TestBlockingCommandsDoNotStallOthers(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	ctx := context.Background()
	blocker := p.client(t)
	other := p.client(t)
	key := fmt.Sprintf("bl%d", rand.Int())
	res := make(chan []string, 1)
	go func() {
		v, _ := blocker.BLPop(ctx, 10*time.Second, key).Result()
		res <- v
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	for i := 0; i < 50; i++ {
		// Same slot as the blocked key: same node, same shared connection.
		if err := other.Set(ctx, "{"+key+"}x", i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("50 commands took %v while a BLPOP was blocked", d)
	}
	if err := other.RPush(ctx, key, "v").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-res:
		if len(v) != 2 || v[1] != "v" {
			t.Fatalf("BLPOP = %v", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("BLPOP not released by RPUSH")
	}
}

// loadResult collects what a load generator saw.
type loadResult struct {
	mu      sync.Mutex
	acked   map[string]string
	errs    []error
	ops     atomic.Int64
	errored atomic.Int64
}

// runLoad runs workers that SET and GET their own keys through the proxy until stop is
// closed (bounded by maxDur), recording every acknowledged write.
func runLoad(t *testing.T, addr string, workers int, prefix string, stop <-chan struct{}, maxDur time.Duration) (*loadResult, func()) {
	res := &loadResult{acked: map[string]string{}}
	var wg sync.WaitGroup
	deadline := time.Now().Add(maxDur)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cl := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1, MaxRetries: -1, ReadTimeout: 10 * time.Second, DisableIdentity: true})
			defer cl.Close()
			ctx := context.Background()
			for i := 0; time.Now().Before(deadline) && i < 1_000_000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("%s:%d:%d", prefix, w, i%500)
				v := strconv.Itoa(i)
				err := cl.Set(ctx, k, v, 0).Err()
				res.ops.Add(1)
				if err != nil {
					res.errored.Add(1)
					res.mu.Lock()
					res.errs = append(res.errs, fmt.Errorf("SET %s: %w", k, err))
					delete(res.acked, k) // fate unknown
					res.mu.Unlock()
					continue
				}
				res.mu.Lock()
				res.acked[k] = v
				res.mu.Unlock()
				got, err := cl.Get(ctx, k).Result()
				res.ops.Add(1)
				if err != nil {
					res.errored.Add(1)
					res.mu.Lock()
					res.errs = append(res.errs, fmt.Errorf("GET %s: %w", k, err))
					res.mu.Unlock()
				} else if got != v {
					res.mu.Lock()
					res.errs = append(res.errs, fmt.Errorf("GET %s = %q right after SET %q", k, got, v))
					res.mu.Unlock()
				}
			}
		}(w)
	}
	return res, wg.Wait
}

// verifyAcked checks that every acknowledged write reads back.
func verifyAcked(t *testing.T, cl *redis.Client, res *loadResult) {
	t.Helper()
	ctx := context.Background()
	res.mu.Lock()
	defer res.mu.Unlock()
	lost := 0
	for k, v := range res.acked {
		got, err := cl.Get(ctx, k).Result()
		if err != nil || got != v {
			lost++
			if lost < 10 {
				t.Errorf("acknowledged write lost: %s = %q, read %q, %v", k, v, got, err)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost", lost, len(res.acked))
	}
}

func TestReshardingUnderLoad(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	p := startProxy(t, c, nil)
	ctx := context.Background()
	prefix := fmt.Sprintf("rs%d", rand.Int())
	stop := make(chan struct{})
	res, wait := runLoad(t, p.addr, 8, prefix, stop, 30*time.Second)

	// Move slots that the load writes to, back and forth, for about 10 s.
	hot := map[int]bool{}
	for w := 0; w < 8; w++ {
		for i := 0; i < 500; i += 50 {
			hot[command.KeySlot([]byte(fmt.Sprintf("%s:%d:%d", prefix, w, i)))] = true
		}
	}
	var slots []int
	for s := range hot {
		slots = append(slots, s)
	}
	deadline := time.Now().Add(10 * time.Second)
	moves := 0
	for time.Now().Before(deadline) {
		masters, err := c.Masters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s := slots[moves%len(slots)]
		owner, err := c.OwnerOf(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		var to *testcluster.Node
		for _, m := range masters {
			if m.Addr != owner.Addr {
				to = m
				break
			}
		}
		if err := c.MoveSlots(ctx, []int{s}, to); err != nil {
			t.Fatalf("move slot %d: %v", s, err)
		}
		moves++
	}
	close(stop)
	wait()
	t.Logf("%d slot moves, %d operations, %d errors", moves, res.ops.Load(), res.errored.Load())
	for i, err := range res.errs {
		if i < 10 {
			t.Error(err)
		}
	}
	if len(res.errs) > 0 {
		t.Fatalf("%d client errors during resharding", len(res.errs))
	}
	if moves < 3 || res.ops.Load() < 1000 {
		t.Fatalf("load too small to mean anything: %d moves, %d ops", moves, res.ops.Load())
	}
	// The clients never saw them, but the proxy must have followed them. (ASK needs a
	// command to land inside a slot's short migration window; TestAskRedirection makes
	// that deterministic.)
	moved := testutil.MetricSum(t, p.reg, "redis_carp_proxy_redirections_total", "type", "moved")
	ask := testutil.MetricSum(t, p.reg, "redis_carp_proxy_redirections_total", "type", "ask")
	t.Logf("redirections followed: %v MOVED, %v ASK", moved, ask)
	if moved == 0 {
		t.Errorf("resharding under load caused no MOVED redirection")
	}
	verifyAcked(t, p.client(t), res)
}

func TestCoordinatedPromotionUnderLoad(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	p := startProxy(t, c, nil)
	ctx := context.Background()
	prefix := fmt.Sprintf("fo%d", rand.Int())
	stop := make(chan struct{})
	res, wait := runLoad(t, p.addr, 8, prefix, stop, 30*time.Second)
	time.Sleep(time.Second)
	replicas, err := c.Replicas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Failover(ctx, replicas[0]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	close(stop)
	wait()
	t.Logf("%d operations, %d errors", res.ops.Load(), res.errored.Load())
	for i, err := range res.errs {
		if i < 10 {
			t.Error(err)
		}
	}
	if len(res.errs) > 0 {
		t.Fatalf("%d client errors during a coordinated failover", len(res.errs))
	}
	verifyAcked(t, p.client(t), res)
}

func TestMasterKillUnderLoad(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{NodeTimeout: 2 * time.Second})
	p := startProxy(t, c, nil)
	ctx := context.Background()
	prefix := fmt.Sprintf("mk%d", rand.Int())

	// Writes acknowledged and replicated before the kill must survive it.
	before, waitBefore := runLoad(t, p.addr, 4, prefix+"b", nil, 1500*time.Millisecond)
	waitBefore()
	if len(before.errs) > 0 {
		t.Fatalf("errors before the kill: %v", before.errs[0])
	}
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range masters {
		if err := c.Client(m).Do(ctx, "WAIT", 1, 2000).Err(); err != nil {
			t.Fatal(err)
		}
	}

	stop := make(chan struct{})
	during, wait := runLoad(t, p.addr, 8, prefix+"d", stop, 30*time.Second)
	time.Sleep(500 * time.Millisecond)
	victim := masters[0]
	var victimSlot int
	for s := 0; s < 16384; s++ {
		if o, _ := c.OwnerOf(ctx, s); o == victim {
			victimSlot = s
			break
		}
	}
	killed := time.Now()
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	// The cluster itself needs cluster-node-timeout plus failure detection and a replica
	// election; the proxy must serve every slot within 2 s of the promotion (and so within
	// node timeout + 2 s of the kill plus the cluster's own election time).
	var promoted atomic.Int64
	go func() {
		for time.Since(killed) < 15*time.Second {
			if o, err := c.OwnerOf(ctx, victimSlot); err == nil && o != victim {
				promoted.Store(int64(time.Since(killed)))
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	cl := p.client(t)
	probe := make([]string, 0, 64)
	for s := 0; len(probe) < 64; s++ {
		k := fmt.Sprintf("probe%d", s)
		probe = append(probe, k)
	}
	var servedAt time.Duration
	for time.Since(killed) < 15*time.Second {
		ok := true
		for _, k := range probe {
			if err := cl.Set(ctx, prefix+k, "x", 0).Err(); err != nil {
				ok = false
				break
			}
		}
		if ok {
			servedAt = time.Since(killed)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wait()
	promotedAt := time.Duration(promoted.Load())
	if servedAt == 0 || promotedAt == 0 || servedAt-promotedAt > 2*time.Second {
		t.Fatalf("slots served again %v after the kill, replica promoted after %v (want served within 2s of the promotion)", servedAt, promotedAt)
	}
	t.Logf("replica promoted %v after kill -9 of %s (node timeout 2s)", promotedAt, victim.Addr)
	t.Logf("all probed slots served %v after kill -9 of %s; %d ops during, %d errors (each an error reply)", servedAt, victim.Addr, during.ops.Load(), during.errored.Load())
	for _, err := range during.errs {
		if !strings.Contains(err.Error(), "proxy:") && !strings.Contains(err.Error(), "CLUSTERDOWN") {
			t.Errorf("unexpected error kind: %v", err)
		}
	}
	verifyAcked(t, cl, before)
}

func TestStalledBackendTimesOut(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	p := startProxy(t, c, func(cfg *config.Config) { cfg.BackendReadTimeout = 500 * time.Millisecond })
	ctx := context.Background()
	cl := p.client(t)
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	victim := masters[0]
	var key string
	for i := 0; ; i++ {
		key = fmt.Sprintf("stall%d", i)
		if o, _ := c.OwnerOf(ctx, command.KeySlot([]byte(key))); o != nil && o.Addr == victim.Addr {
			break
		}
	}
	if err := cl.Set(ctx, key, "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Pause(ctx, victim, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = cl.Get(ctx, key).Err()
	if err == nil || !strings.Contains(err.Error(), "did not answer in time") {
		t.Fatalf("GET on a paused master: %v, want a timeout error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout error took %v", d)
	}
	// Other masters keep working meanwhile.
	for i := 0; i < 50; i++ {
		k := fmt.Sprintf("other%d", i)
		if o, _ := c.OwnerOf(ctx, command.KeySlot([]byte(k))); o != nil && o.Addr != victim.Addr {
			if err := cl.Set(ctx, k, "1", 0).Err(); err != nil {
				t.Fatalf("SET %s on a healthy master: %v", k, err)
			}
		}
	}
	// Recovers once the pause ends.
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := cl.Get(ctx, key).Result()
		if err == nil && v == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after the pause: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// busyReadTimeout is the proxy's backend-read-timeout in these tests: every case below
// keeps a node from answering a connection for several times as long.
const busyReadTimeout = 500 * time.Millisecond

// keyPerMaster returns one key for each master of c, by master address.
func keyPerMaster(t *testing.T, c *testcluster.Cluster, prefix string) map[string]string {
	t.Helper()
	ctx := context.Background()
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for i := 0; len(keys) < len(masters) && i < 1000; i++ {
		k := fmt.Sprintf("%s:{%d}", prefix, i)
		n, err := c.OwnerOf(ctx, command.KeySlot([]byte(k)))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := keys[n.Addr]; !ok {
			keys[n.Addr] = k
		}
	}
	if len(keys) != len(masters) {
		t.Fatalf("keys for %d of %d masters", len(keys), len(masters))
	}
	return keys
}

// masterReaders read one key of every master through the proxy, each on its own
// connection, every 5 ms, until stopped (at most 60 s).
type masterReaders struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	ok   map[string]int      // master: reads that returned the value
	errs map[string][]string // master: errors, with when they came
}

func startMasterReaders(t *testing.T, p *testProxy, keys map[string]string) *masterReaders {
	t.Helper()
	ctx := context.Background()
	cl := p.client(t)
	for _, k := range keys {
		if err := cl.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	mr := &masterReaders{stop: make(chan struct{}), ok: map[string]int{}, errs: map[string][]string{}}
	start := time.Now()
	for addr, k := range keys {
		for range 2 {
			mr.wg.Add(1)
			go func() {
				defer mr.wg.Done()
				rc := p.client(t, func(o *redis.Options) { o.PoolSize = 1; o.ReadTimeout = 30 * time.Second })
				for time.Since(start) < 60*time.Second {
					select {
					case <-mr.stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
					v, err := rc.Get(ctx, k).Result()
					mr.mu.Lock()
					if err == nil && v == "v" {
						mr.ok[addr]++
					} else {
						mr.errs[addr] = append(mr.errs[addr], fmt.Sprintf("%v after %v (value %q)", err, time.Since(start).Round(time.Millisecond), v))
					}
					mr.mu.Unlock()
				}
			}()
		}
	}
	return mr
}

// counts returns the successful reads per master so far.
func (mr *masterReaders) counts() map[string]int {
	mr.mu.Lock()
	defer mr.mu.Unlock()
	out := map[string]int{}
	for k, v := range mr.ok {
		out[k] = v
	}
	return out
}

// finish stops the readers and checks that every master was read meanwhile; reads of
// busy (when set) may have failed with Redis's -BUSY error and nothing else, those of the
// other masters never failed.
func (mr *masterReaders) finish(t *testing.T, busy string) {
	t.Helper()
	close(mr.stop)
	mr.wg.Wait()
	for addr, errs := range mr.errs {
		for _, e := range errs {
			if addr != busy || !strings.HasPrefix(e, "BUSY Redis is busy running a script.") {
				t.Errorf("read of master %s (busy: %v) failed: %s", addr, addr == busy, e)
				break
			}
		}
	}
	for addr, n := range mr.ok {
		if n == 0 {
			t.Errorf("master %s: no successful read", addr)
		}
	}
}

// busyMaster waits until one of masters answers its own PING with -BUSY and returns it.
func busyMaster(t *testing.T, c *testcluster.Cluster, masters []*testcluster.Node) *testcluster.Node {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, n := range masters {
			if err := c.Client(n).Ping(ctx).Err(); err != nil && strings.HasPrefix(err.Error(), "BUSY") {
				return n
			}
		}
	}
	t.Fatal("no master became BUSY")
	return nil
}

// expectBusy checks that a command for the busy master's key, from a new client of the
// proxy (on the same event loop as the script's caller), gets Redis's -BUSY at once rather
// than waiting behind the script.
func expectBusy(t *testing.T, p *testProxy, key, kill string) {
	t.Helper()
	nc := p.client(t, func(o *redis.Options) { o.PoolSize = 1; o.ReadTimeout = 2 * time.Second })
	start := time.Now()
	err := nc.Get(context.Background(), key).Err()
	want := "BUSY Redis is busy running a script. You can only call " + kill + " KILL or SHUTDOWN NOSAVE."
	if err == nil || err.Error() != want || time.Since(start) > time.Second {
		t.Fatalf("GET of the busy master's key from a new client: %v after %v; want %q at once", err, time.Since(start), want)
	}
	// A blocking command's dedicated connection: its hand-shake PING is answered -BUSY,
	// which means reachable; the command gets the node's -BUSY too.
	start = time.Now()
	err = nc.BLPop(context.Background(), time.Second, key+":list").Err()
	if err == nil || err.Error() != want || time.Since(start) > time.Second {
		t.Fatalf("BLPOP of a busy master's key from a new client: %v after %v; want %q at once", err, time.Since(start), want)
	}
}

// killScripts ends any script or function still running on the masters (cleanup).
func killScripts(c *testcluster.Cluster, masters []*testcluster.Node) {
	ctx := context.Background()
	for _, n := range masters {
		c.Client(n).Do(ctx, "SCRIPT", "KILL")
		c.Client(n).Do(ctx, "FUNCTION", "KILL")
	}
}

// callResult is how a command sent through the proxy ended.
type callResult struct {
	val  any
	err  error
	took time.Duration
}

func goDo(cl *redis.Client, args ...any) <-chan callResult {
	ch := make(chan callResult, 1)
	go func() {
		start := time.Now()
		v, err := cl.Do(context.Background(), args...).Result()
		ch <- callResult{v, err, time.Since(start)}
	}()
	return ch
}

// Busy and paused nodes are alive (issue 26): a node running a script past its
// busy-reply-threshold, paused by a CLIENT PAUSE the proxy fanned out, or loading its
// dataset is not a dead node. The script's caller waits for its result (beyond
// backend-read-timeout), SCRIPT KILL and FUNCTION KILL reach the node through the proxy,
// paused writes complete when the pause ends, and clients keep reading every master
// meanwhile (the busy one's readers get Redis's -BUSY or wait).
func TestBusyNodesAreAlive(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Replicas: -1, NodeTimeout: 15 * time.Second, ExtraConfig: []string{
		"busy-reply-threshold 100",
		// LOADING lasts a few seconds after a restart with 10,000 keys (the loading case).
		"key-load-delay 200", "loading-process-events-interval-bytes 1024",
	}})
	p := startProxy(t, c, func(cfg *config.Config) {
		cfg.BackendReadTimeout = busyReadTimeout
		cfg.EnableAdminCommands = true
		cfg.EventLoops = 1 // every client shares the loop's one connection per node
	})
	ctx := context.Background()
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys := keyPerMaster(t, c, "bz")
	cl := p.client(t, func(o *redis.Options) { o.ReadTimeout = 30 * time.Second })

	t.Run("LoopingScriptKilled", func(t *testing.T) {
		defer killScripts(c, masters)
		mr := startMasterReaders(t, p, keys)
		eval := goDo(cl, "EVAL", "while true do end", 0)
		busy := busyMaster(t, c, masters)
		time.Sleep(3 * busyReadTimeout)
		select {
		case r := <-eval:
			t.Fatalf("the looping script's caller got %v, %v after %v; want it to wait until the script is killed", r.val, r.err, r.took)
		default:
		}
		expectBusy(t, p, keys[busy.Addr], "SCRIPT")
		if got, err := cl.Do(ctx, "SCRIPT", "KILL").Result(); err != nil || got != "OK" {
			t.Fatalf("SCRIPT KILL through the proxy: %v, %v; want OK", got, err)
		}
		r := <-eval
		if r.err == nil || !strings.Contains(r.err.Error(), "Script killed by user with SCRIPT KILL") {
			t.Fatalf("the killed script's caller got %v, %v; want the node's error for a killed script", r.val, r.err)
		}
		if _, err := cl.Do(ctx, "SCRIPT", "KILL").Result(); err == nil || err.Error() != "NOTBUSY No scripts in execution right now." {
			t.Fatalf("SCRIPT KILL with no script running: %v; want NOTBUSY", err)
		}
		before := mr.counts()[busy.Addr]
		time.Sleep(300 * time.Millisecond)
		if mr.counts()[busy.Addr] == before {
			t.Errorf("no read of %s succeeded after the kill", busy.Addr)
		}
		mr.finish(t, busy.Addr)
	})

	t.Run("LoopingFunctionKilled", func(t *testing.T) {
		defer killScripts(c, masters)
		lib := "#!lua name=bzlib\nredis.register_function('bzloop', function(keys, args) while true do end end)"
		if err := cl.Do(ctx, "FUNCTION", "LOAD", "REPLACE", lib).Err(); err != nil {
			t.Fatal(err)
		}
		mr := startMasterReaders(t, p, keys)
		fcall := goDo(cl, "FCALL", "bzloop", 0)
		busy := busyMaster(t, c, masters)
		time.Sleep(3 * busyReadTimeout)
		select {
		case r := <-fcall:
			t.Fatalf("the looping function's caller got %v, %v after %v; want it to wait until the function is killed", r.val, r.err, r.took)
		default:
		}
		expectBusy(t, p, keys[busy.Addr], "FUNCTION")
		// SCRIPT KILL does not kill a function: Redis's answer says which command does.
		if _, err := cl.Do(ctx, "SCRIPT", "KILL").Result(); err == nil || err.Error() != "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE." {
			t.Fatalf("SCRIPT KILL while a function runs: %v; want Redis's BUSY answer naming FUNCTION KILL", err)
		}
		if got, err := cl.Do(ctx, "FUNCTION", "KILL").Result(); err != nil || got != "OK" {
			t.Fatalf("FUNCTION KILL through the proxy: %v, %v; want OK", got, err)
		}
		r := <-fcall
		if r.err == nil || !strings.Contains(r.err.Error(), "Script killed by user with SCRIPT KILL") {
			t.Fatalf("the killed function's caller got %v, %v; want the node's error for a killed script", r.val, r.err)
		}
		if _, err := cl.Do(ctx, "FUNCTION", "KILL").Result(); err == nil || err.Error() != "NOTBUSY No scripts in execution right now." {
			t.Fatalf("FUNCTION KILL with nothing running: %v; want NOTBUSY", err)
		}
		time.Sleep(300 * time.Millisecond)
		mr.finish(t, busy.Addr)
	})

	// A client whose command waits behind the script (sent while it runs, on the loop's
	// connection the script runs on, before the proxy parks it) does not have its next
	// command for that node overtake it on the new connection: it runs after, as on a single Redis.
	t.Run("ParkedConnectionKeepsOrder", func(t *testing.T) {
		defer killScripts(c, masters)
		var addr string
		for a := range keys {
			addr = a
		}
		k := keys[addr]
		eval := goDo(cl, "EVAL", "while true do end", 1, k)
		// After the script was queued on the loop's connection to the node, before the
		// proxy parks that connection (backend-suspect-after, 200 ms, at the earliest).
		time.Sleep(100 * time.Millisecond)
		b := dialRaw(t, p.addr)
		b.send(fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$4\r\nord1\r\n", len(k), k))
		if busy := busyMaster(t, c, masters); busy.Addr != addr {
			t.Fatalf("busy master %s, want %s", busy.Addr, addr)
		}
		time.Sleep(3 * busyReadTimeout)
		b.send(fmt.Sprintf("*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(k), k))
		time.Sleep(300 * time.Millisecond)
		if got, err := cl.Do(ctx, "SCRIPT", "KILL").Result(); err != nil || got != "OK" {
			t.Fatalf("SCRIPT KILL: %v, %v", got, err)
		}
		<-eval
		for _, want := range []string{"+OK", "$4", "ord1"} {
			if got := b.line(); got != want {
				t.Fatalf("SET then GET behind the script: got %q, want %q", got, want)
			}
		}
	})

	t.Run("LongScriptCallerGetsResult", func(t *testing.T) {
		defer killScripts(c, masters)
		mr := startMasterReaders(t, p, keys)
		script := `local s = redis.call('TIME')
while true do
  local n = redis.call('TIME')
  if (n[1] - s[1]) * 1000000 + (n[2] - s[2]) >= 2000000 then return 'done' end
end`
		eval := goDo(cl, "EVAL", script, 0)
		busy := busyMaster(t, c, masters)
		r := <-eval
		if r.err != nil || r.val != "done" || r.took < 2*time.Second {
			t.Fatalf("a 2 s script's caller got %v, %v after %v; want done after 2 s", r.val, r.err, r.took)
		}
		time.Sleep(300 * time.Millisecond)
		mr.finish(t, busy.Addr)
	})

	// backend-busy-timeout bounds the wait: a script that never ends fails its caller then.
	t.Run("BusyTimeoutBounds", func(t *testing.T) {
		defer killScripts(c, masters)
		bp := startProxy(t, c, func(cfg *config.Config) {
			cfg.BackendReadTimeout = busyReadTimeout
			cfg.BackendBusyTimeout = 1500 * time.Millisecond
		})
		bc := bp.client(t, func(o *redis.Options) { o.ReadTimeout = 30 * time.Second })
		r := <-goDo(bc, "EVAL", "while true do end", 0)
		const want = "ERR proxy: cluster node stayed busy (a script, loading or a pause) beyond backend-busy-timeout; the command may or may not have been executed"
		if r.err == nil || r.err.Error() != want || r.took < 1400*time.Millisecond || r.took > 4*time.Second {
			t.Fatalf("a looping script's caller with backend-busy-timeout 1.5s got %v, %v after %v; want %q after 1.5 s", r.val, r.err, r.took, want)
		}
	})

	t.Run("PausedWritesComplete", func(t *testing.T) {
		mr := startMasterReaders(t, p, keys)
		defer cl.Do(ctx, "CLIENT", "UNPAUSE")
		paused := time.Now()
		if err := cl.Do(ctx, "CLIENT", "PAUSE", 4000, "WRITE").Err(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				wc := p.client(t, func(o *redis.Options) { o.PoolSize = 1; o.ReadTimeout = 30 * time.Second })
				for i := range 3 {
					k := fmt.Sprintf("bzw:{%d}:%d", w, i)
					if err := wc.Set(ctx, k, i, 0).Err(); err != nil {
						errs <- fmt.Errorf("SET %s after %v: %w", k, time.Since(paused).Round(time.Millisecond), err)
						return
					}
					if d := time.Since(paused); i == 0 && d < 3500*time.Millisecond {
						errs <- fmt.Errorf("SET %s completed %v into a 4 s pause", k, d)
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		mr.finish(t, "")
	})

	// CLIENT PAUSE ALL holds reads too, and the probes: the pause the proxy fanned out is
	// what it knows.
	t.Run("PausedAllCompletes", func(t *testing.T) {
		for _, k := range keys {
			if err := cl.Set(ctx, k, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		defer cl.Do(ctx, "CLIENT", "UNPAUSE")
		paused := time.Now()
		if err := cl.Do(ctx, "CLIENT", "PAUSE", 2000, "ALL").Err(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for addr, k := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				wc := p.client(t, func(o *redis.Options) { o.PoolSize = 1; o.ReadTimeout = 30 * time.Second })
				if v, err := wc.Get(ctx, k).Result(); err != nil || v != "v" {
					errs <- fmt.Errorf("GET %s (master %s) after %v: %q, %v", k, addr, time.Since(paused).Round(time.Millisecond), v, err)
				} else if d := time.Since(paused); d < 1500*time.Millisecond {
					errs <- fmt.Errorf("GET %s completed %v into a 2 s pause", k, d)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("RestartedNodeLoading", func(t *testing.T) {
		victim := masters[0]
		tag := ""
		for addr, k := range keys {
			if addr == victim.Addr {
				tag = k
			}
		}
		// 10,000 keys of the victim, saved, then a restart: it answers -LOADING for a
		// few seconds (key-load-delay).
		nc := c.Client(victim)
		for b := 0; b < 10; b++ {
			pipe := nc.Pipeline()
			for i := 0; i < 1000; i++ {
				pipe.Set(ctx, fmt.Sprintf("%s:%d", tag, b*1000+i), "v", 0)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.Save(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.Kill(victim); err != nil {
			t.Fatal(err)
		}
		restarted := make(chan error, 1)
		go func() { restarted <- c.Restart(ctx, victim) }()
		direct := redis.NewClient(&redis.Options{Addr: victim.Addr, PoolSize: 1, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second, DisableIdentity: true, Protocol: 2})
		defer direct.Close()
		loading := false
		for deadline := time.Now().Add(5 * time.Second); !loading && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			err := direct.Ping(ctx).Err()
			loading = err != nil && strings.HasPrefix(err.Error(), "LOADING")
		}
		if !loading {
			t.Fatal("the restarted node never answered LOADING")
		}
		// Clients of the proxy meanwhile wait for the data: a restarted cluster node answers
		// -LOADING to the hand-shake and CLUSTERDOWN to commands with keys until it has
		// loaded and rejoined, and the proxy keeps retrying those while it loads. Never an
		// error that says the node is unreachable or that the command's fate is unknown.
		var mu sync.Mutex
		var got []string
		var longest time.Duration
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rc := p.client(t, func(o *redis.Options) { o.PoolSize = 1 })
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
					t0 := time.Now()
					v, err := rc.Get(ctx, fmt.Sprintf("%s:%d", tag, (w*2500+i)%10000)).Result()
					took := time.Since(t0)
					s := "value " + v
					if err != nil {
						s = err.Error()
					}
					mu.Lock()
					got = append(got, s)
					longest = max(longest, took)
					mu.Unlock()
				}
			}()
		}
		if err := <-restarted; err != nil {
			close(stop)
			wg.Wait()
			t.Fatal(err)
		}
		// Once loaded (and rejoined), the reads succeed.
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			mu.Lock()
			done := len(got) > 0 && got[len(got)-1] == "value v"
			mu.Unlock()
			if done {
				break
			}
		}
		close(stop)
		wg.Wait()
		for _, s := range got {
			if s != "value v" && s != "LOADING Redis is loading the dataset in memory" {
				t.Errorf("a read through the proxy while %s loaded got %q", victim.Addr, s)
			}
		}
		if longest < time.Second {
			t.Errorf("the longest read took %v: the reads did not overlap the loading", longest)
		}
		t.Logf("%d reads while loading, the longest waited %v", len(got), longest)
	})

	// A script that wrote cannot be killed: Redis's UNKILLABLE comes back, SHUTDOWN NOSAVE
	// through the proxy is refused and says where to send it, and once the node is shut
	// down directly the caller learns that its script's fate is unknown. (Last: it stops a
	// master.)
	t.Run("UnkillableScript", func(t *testing.T) {
		victim := masters[len(masters)-1]
		eval := goDo(cl, "EVAL", "redis.call('SET', KEYS[1], 'x') while true do end", 1, keys[victim.Addr])
		if busy := busyMaster(t, c, masters); busy != victim {
			t.Fatalf("busy master %s, want %s", busy.Addr, victim.Addr)
		}
		const unkillable = "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command."
		if _, err := cl.Do(ctx, "SCRIPT", "KILL").Result(); err == nil || err.Error() != unkillable {
			t.Fatalf("SCRIPT KILL of a script that wrote: %v; want %q", err, unkillable)
		}
		const refused = "ERR SHUTDOWN would stop one node of the cluster behind the proxy (to stop a node whose script cannot be killed, UNKILLABLE, send SHUTDOWN NOSAVE to that node directly): not supported by the proxy"
		if _, err := cl.Do(ctx, "SHUTDOWN", "NOSAVE").Result(); err == nil || err.Error() != refused {
			t.Fatalf("SHUTDOWN NOSAVE through the proxy: %v; want %q", err, refused)
		}
		time.Sleep(3 * busyReadTimeout)
		select {
		case r := <-eval:
			t.Fatalf("the unkillable script's caller got %v, %v after %v; want it to wait", r.val, r.err, r.took)
		default:
		}
		c.Client(victim).Do(ctx, "SHUTDOWN", "NOSAVE")
		r := <-eval
		if r.err == nil || !strings.Contains(r.err.Error(), "may or may not have been executed") {
			t.Fatalf("the caller of a script whose node was shut down got %v, %v; want an unknown fate", r.val, r.err)
		}
	})
}

package proxy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// opRecord is one command of the frozen-master probe: when it was sent and how it ended.
type opRecord struct {
	sent time.Time
	err  error
	what string
}

// A master frozen with SIGSTOP (a hung host: its sockets accept, nothing answers) is
// replaced by the cluster after cluster-node-timeout and an election. The proxy must
// switch as soon as the cluster does: no command sent 100 ms or more after the promotion
// may fail. Commands sent to the frozen master before that fail (their fate is unknown),
// at the latest when the new map moves the slots away.
func TestFrozenMasterFailover(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{NodeTimeout: 2 * time.Second})
	p := startProxy(t, c, nil)
	ctx := context.Background()

	victim, err := c.OwnerOf(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var replica *testcluster.Node
	replicas, err := c.Replicas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range replicas {
		role, err := c.Client(r).Do(ctx, "ROLE").Slice()
		if err == nil && len(role) > 2 && fmt.Sprint(role[2]) == strconv.Itoa(victim.Port) {
			replica = r
		}
	}
	if replica == nil {
		t.Fatalf("no replica of %s", victim.Addr)
	}

	// 4 clients, SET+GET every 2 ms, over keys of every master.
	var mu sync.Mutex
	var ops []opRecord
	stop := make(chan struct{})
	var wg sync.WaitGroup
	prefix := fmt.Sprintf("fz%d", rand.Int())
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cl := redis.NewClient(&redis.Options{Addr: p.addr, PoolSize: 1, MaxRetries: -1, ReadTimeout: 20 * time.Second, DisableIdentity: true})
			defer cl.Close()
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				k := fmt.Sprintf("%s:%d:%d", prefix, w, i%64)
				v := strconv.Itoa(i)
				start := time.Now()
				err := cl.Set(ctx, k, v, 0).Err()
				rec := []opRecord{{sent: start, err: err, what: "SET " + k}}
				if err == nil {
					start = time.Now()
					got, err := cl.Get(ctx, k).Result()
					if err == nil && got != v {
						err = fmt.Errorf("read %q after writing %q", got, v)
					}
					rec = append(rec, opRecord{sent: start, err: err, what: "GET " + k})
				}
				mu.Lock()
				ops = append(ops, rec...)
				mu.Unlock()
			}
		}(w)
	}
	time.Sleep(500 * time.Millisecond)

	frozen := time.Now()
	if err := c.Freeze(victim); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			c.Resume(victim)
		}
	}()
	// The promotion: the replica says it is a master.
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr, PoolSize: 1, MaxRetries: -1, ReadTimeout: time.Second, DialTimeout: time.Second, DisableIdentity: true})
	defer rc.Close()
	var promoted time.Time
	for time.Since(frozen) < 12*time.Second {
		role, err := rc.Do(ctx, "ROLE").Slice()
		if err == nil && len(role) > 0 && role[0] == "master" {
			promoted = time.Now()
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if promoted.IsZero() {
		t.Fatalf("replica %s not promoted within 12 s of freezing %s", replica.Addr, victim.Addr)
	}
	time.Sleep(time.Until(frozen.Add(12 * time.Second)))
	if err := c.Resume(victim); err != nil {
		t.Fatal(err)
	}
	resumed = true
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	var before, after int
	var lastFailed time.Duration = -1 << 62
	for _, op := range ops {
		if op.err == nil {
			continue
		}
		d := op.sent.Sub(promoted)
		lastFailed = max(lastFailed, d)
		if d >= 100*time.Millisecond {
			after++
			if after <= 10 {
				t.Errorf("%s sent %v after the promotion failed: %v", op.what, d, op.err)
			}
		} else {
			before++
		}
	}
	t.Logf("froze %s; replica %s promoted %v later; %d commands, %d failed before promotion+100ms (last failed one sent %v after the promotion), %d after",
		victim.Addr, replica.Addr, promoted.Sub(frozen).Round(time.Millisecond), len(ops), before, lastFailed.Round(time.Millisecond), after)
	t.Logf("suspect: %v, abandoned: %v, fast refreshes: %v",
		testutil.MetricSum(t, p.reg, "redis_carp_proxy_backend_suspect_total"),
		testutil.MetricSum(t, p.reg, "redis_carp_proxy_backend_abandoned_total"),
		testutil.MetricSum(t, p.reg, "redis_carp_proxy_slotmap_refreshes_total", "trigger", "fast"))
	if after > 0 {
		t.Fatalf("%d commands sent 100 ms or more after the promotion failed", after)
	}
	if len(ops) < 2000 {
		t.Fatalf("only %d commands: load too small", len(ops))
	}
}

// The same slot moves back and forth between two masters under pipelined go-redis load,
// half of the moves finalized in the skewed order (source first, the target 300 ms later)
// so that the two nodes send MOVED to each other meanwhile. The proxy backs off and
// refreshes within redirect-budget instead of giving up after max-redirects: no client
// sees an error.
func TestRedirectLoopDuringResharding(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	p := startProxy(t, c, nil)
	ctx := context.Background()
	const tag = "{pingpong}"
	slot := command.KeySlot([]byte(tag))
	a, b, err := c.OwnerAndOther(ctx, slot)
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ops, failed atomic.Int64
	var mu sync.Mutex
	var errs []string
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cl := redis.NewClient(&redis.Options{Addr: p.addr, PoolSize: 1, MaxRetries: -1, ReadTimeout: 10 * time.Second, DisableIdentity: true})
			defer cl.Close()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// Pipeline 10: 5 SET + 5 GET, mostly on the moving slot.
				pipe := cl.Pipeline()
				var sets []*redis.StatusCmd
				var gets []*redis.StringCmd
				var vals []string
				for j := 0; j < 5; j++ {
					k := fmt.Sprintf("%s:%d:%d", tag, w, (i*5+j)%50)
					if j == 4 {
						k = fmt.Sprintf("other:%d:%d", w, i%50)
					}
					v := strconv.Itoa(i*5 + j)
					sets = append(sets, pipe.Set(ctx, k, v, 0))
					gets = append(gets, pipe.Get(ctx, k))
					vals = append(vals, v)
				}
				pipe.Exec(ctx)
				ops.Add(10)
				for j := range sets {
					if err := sets[j].Err(); err != nil {
						failed.Add(1)
						mu.Lock()
						errs = append(errs, fmt.Sprintf("%v: %v", sets[j].Args(), err))
						mu.Unlock()
					}
					if v, err := gets[j].Result(); err != nil || v != vals[j] {
						failed.Add(1)
						mu.Lock()
						errs = append(errs, fmt.Sprintf("%v = %q, %v; want %q", gets[j].Args(), v, err, vals[j]))
						mu.Unlock()
					}
				}
			}
		}(w)
	}
	time.Sleep(300 * time.Millisecond)
	moves := 0
	for i := 0; i < 12; i++ {
		to := b
		if i%2 == 1 {
			to = a
		}
		var err error
		if i%4 < 2 {
			err = c.MoveSlotsSkewed(ctx, []int{slot}, to, 300*time.Millisecond)
		} else {
			err = c.MoveSlots(ctx, []int{slot}, to)
		}
		if err != nil {
			t.Fatalf("move %d of slot %d to %s: %v", i, slot, to.Addr, err)
		}
		moves++
		time.Sleep(250 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	backoffs := testutil.MetricSum(t, p.reg, "redis_carp_proxy_redirect_backoffs_total")
	moved := testutil.MetricSum(t, p.reg, "redis_carp_proxy_redirections_total", "type", "moved")
	t.Logf("%d moves of slot %d between %s and %s (6 skewed); %d commands, %d failed; %v MOVED followed, %v redirect back-offs",
		moves, slot, a.Addr, b.Addr, ops.Load(), failed.Load(), moved, backoffs)
	for i, e := range errs {
		if i < 10 {
			t.Error(e)
		}
	}
	if failed.Load() > 0 {
		t.Fatalf("%d commands failed while the slot moved back and forth", failed.Load())
	}
	if backoffs == 0 {
		t.Errorf("no redirection loop was seen: the skewed moves did not make the nodes disagree")
	}
}

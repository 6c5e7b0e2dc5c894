// Command soak runs the proxy binary under steady pipelined load against a real 6-node
// cluster while, on a schedule, a master is killed (and later restarted), a replica takes
// over with CLUSTER FAILOVER, slots migrate between masters and a master stalls (CLIENT
// PAUSE). It prints per-interval throughput, errors and p99 latency, and at the end the
// totals, errors by kind (marking kinds the scenario does not allow), and the proxy's RSS
// and goroutine count at start and end. Run it with `make soak DURATION=10m`.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// allowed are the error kinds the chaos scenario may cause: commands in flight on a killed
// or stalled node end with an explicit unknown-fate or timeout error, commands for a node
// being failed over may see CLUSTERDOWN or not be sent. Anything else is a failure.
var allowed = map[string]bool{"fate_unknown": true, "backend_timeout": true, "not_sent": true, "clusterdown": true, "tryagain": true}

func classify(err error) string {
	s := err.Error()
	switch {
	case strings.Contains(s, "may or may not have been executed") && strings.Contains(s, "in time"):
		return "backend_timeout"
	case strings.Contains(s, "may or may not have been executed"):
		return "fate_unknown"
	case strings.Contains(s, "command not sent") || strings.Contains(s, "unreachable"):
		return "not_sent"
	case strings.Contains(s, "CLUSTERDOWN"):
		return "clusterdown"
	case strings.Contains(s, "TRYAGAIN"):
		return "tryagain"
	case strings.Contains(s, "MOVED") || strings.Contains(s, "ASK"):
		return "redirect_leaked"
	case strings.Contains(s, "i/o timeout"):
		return "client_timeout"
	}
	return "other: " + s
}

// hist is a log-scale latency histogram (10% buckets from 10µs).
type hist struct {
	mu sync.Mutex
	b  [200]int64
	n  int64
}

func (h *hist) add(d time.Duration) {
	i := 0
	if d > 10*time.Microsecond {
		i = min(int(math.Log(float64(d)/float64(10*time.Microsecond))/math.Log(1.1)), len(h.b)-1)
	}
	h.mu.Lock()
	h.b[i]++
	h.n++
	h.mu.Unlock()
}

func (h *hist) p99() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	want := int64(math.Ceil(float64(h.n) * 0.99))
	var c int64
	for i, v := range h.b {
		c += v
		if c >= want && v > 0 {
			return time.Duration(float64(10*time.Microsecond) * math.Pow(1.1, float64(i+1)))
		}
	}
	return 0
}

type stats struct {
	cmds atomic.Int64
	mu   sync.Mutex
	errs map[string]int64
	lat  *hist
}

func newStats() *stats { return &stats{errs: map[string]int64{}, lat: &hist{}} }

func (s *stats) fail(kind string, n int64) {
	s.mu.Lock()
	s.errs[kind] += n
	s.mu.Unlock()
}

// options are the command's flags.
type options struct {
	bin                string
	duration, interval time.Duration
	workers, pipeline  int
	pause              time.Duration
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.bin, "proxy", "build/redis-carp-proxy", "proxy binary")
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "how long to run")
	flag.DurationVar(&o.interval, "interval", time.Minute, "report interval (p99 per interval)")
	flag.IntVar(&o.workers, "clients", 8, "client connections")
	flag.IntVar(&o.pipeline, "pipeline", 16, "commands per pipeline")
	flag.DurationVar(&o.pause, "pause", time.Millisecond, "pause between a client's pipelines (keeps a shared machine usable)")
	flag.Parse()
	return o
}

// run starts the cluster and the proxy, puts them under load and the chaos schedule for
// the duration, and reports.
func run() error {
	o := parseFlags()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	r, err := startRig(ctx, o)
	if err != nil {
		return err
	}
	defer r.close()
	logf("cluster up, proxy %s (pid %d); running %v with %d clients x pipeline %d",
		r.listen, r.proxy.Process.Pid, o.duration, o.workers, o.pipeline)

	start := time.Now() // the chaos schedule counts from it
	l := &load{total: newStats(), cur: newStats()}
	lctx, lcancel := context.WithTimeout(ctx, o.duration)
	defer lcancel()
	var wg sync.WaitGroup
	for w := 0; w < o.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.worker(lctx, r.client, o.pipeline, o.pause)
		}()
	}
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		chaos(lctx, r.cluster, start, o.duration)
	}()
	steady := r.steadyResources(lctx)

	l.intervals(lctx, o.interval)
	wg.Wait()
	l.flush()
	<-chaosDone
	if ctx.Err() != nil {
		return ctx.Err()
	}
	before := <-steady
	time.Sleep(2 * time.Second) // same connections open as at the start snapshot
	return report(o, l, before, r.resources())
}

func logf(format string, args ...any) {
	fmt.Printf("%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// rig is the 6-node cluster, the proxy in front of it and the client of the load.
type rig struct {
	cluster       *testcluster.Cluster
	proxy         *exec.Cmd
	client        *redis.Client
	listen, admin string
}

// startRig starts the cluster and the proxy binary, and waits for the proxy to answer
// PING. On error, whatever it started is stopped again.
func startRig(ctx context.Context, o options) (*rig, error) {
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	c, err := testcluster.Start(sctx, testcluster.Options{NodeTimeout: 3 * time.Second})
	cancel()
	if err != nil {
		return nil, err
	}
	r := &rig{cluster: c, listen: freeAddr(), admin: freeAddr()}
	r.proxy = exec.Command(o.bin, "--listen", r.listen, "--cluster-seeds", strings.Join(c.Seeds(), ","),
		"--admin-listen", r.admin, "--log-level", "warn", "--slotmap-refresh-interval", "1s")
	r.proxy.Stderr = os.Stderr
	if err := r.proxy.Start(); err != nil {
		c.Close()
		return nil, err
	}
	r.client = redis.NewClient(&redis.Options{Addr: r.listen, PoolSize: o.workers + 2, MaxRetries: -1, ReadTimeout: 10 * time.Second, DisableIdentity: true})
	for deadline := time.Now().Add(20 * time.Second); r.client.Ping(ctx).Err() != nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			r.close()
			return nil, errors.New("proxy did not answer PING")
		}
	}
	return r, nil
}

// close closes the client, stops the proxy and then the cluster.
func (r *rig) close() {
	r.client.Close()
	r.proxy.Process.Signal(syscall.SIGTERM)
	r.proxy.Wait()
	r.cluster.Close()
}

// resources are the proxy's RSS and goroutine count (zero where unreadable).
type resources struct {
	rss        int64
	goroutines int
}

func (r *rig) resources() resources {
	rs, _ := rss(r.proxy.Process.Pid)
	g, _ := goroutines(r.admin)
	return resources{rss: rs, goroutines: g}
}

// steadyResources reads the proxy's resources once the load is steady (every client and
// backend connection open), 3s into it, and logs them. The channel yields them, or zero
// when the load ends first.
func (r *rig) steadyResources(ctx context.Context) <-chan resources {
	ch := make(chan resources, 1)
	go func() {
		select {
		case <-time.After(3 * time.Second):
			res := r.resources()
			logf("after 3s of load: proxy RSS %d KiB, %d goroutines", res.rss>>10, res.goroutines)
			ch <- res
		case <-ctx.Done():
			ch <- resources{}
		}
	}()
	return ch
}

// load is the clients' pipelined SET/GET load and its statistics: over the whole run,
// for the current report interval, and one row per interval reported.
type load struct {
	total *stats
	mu    sync.Mutex
	cur   *stats
	rows  []row
}

// row is one report interval.
type row struct {
	n    int64
	errs map[string]int64
	p99  time.Duration
}

// worker sends pipelines of SETs and GETs on random keys, pausing between them, until
// ctx ends; each command counts as served or as an error of its kind, and each pipeline's
// latency goes into the histograms.
func (l *load) worker(ctx context.Context, cl *redis.Client, pipeline int, pause time.Duration) {
	for i := 0; ctx.Err() == nil; i++ {
		p := cl.Pipeline()
		for j := 0; j < pipeline; j++ {
			k := "soak:" + strconv.Itoa(rand.IntN(100000))
			if j%2 == 0 {
				p.Set(ctx, k, strconv.Itoa(i), 0)
			} else {
				p.Get(ctx, k)
			}
		}
		start := time.Now()
		cmds, _ := p.Exec(ctx)
		d := time.Since(start)
		if ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		s := l.cur
		l.mu.Unlock()
		for _, cmd := range cmds {
			if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
				k := classify(err)
				s.fail(k, 1)
				l.total.fail(k, 1)
				continue
			}
			s.cmds.Add(1)
			l.total.cmds.Add(1)
		}
		s.lat.add(d)
		l.total.lat.add(d)
		time.Sleep(pause)
	}
}

// intervals closes an interval every period until ctx ends.
func (l *load) intervals(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			l.flush()
		case <-ctx.Done():
			return
		}
	}
}

// flush closes the current interval: a row, printed, unless nothing happened in it.
func (l *load) flush() {
	l.mu.Lock()
	s := l.cur
	l.cur = newStats()
	l.mu.Unlock()
	s.mu.Lock()
	r := row{n: s.cmds.Load(), errs: s.errs, p99: s.lat.p99()}
	s.mu.Unlock()
	if r.n == 0 && len(r.errs) == 0 {
		return
	}
	l.rows = append(l.rows, r)
	logf("interval %d: %d commands ok, errors %v, pipeline p99 %v", len(l.rows), r.n, r.errs, r.p99.Round(10*time.Microsecond))
}

// chaos runs the schedule, at fractions of the run d counted from start: kill a master
// (15%), restart it (30%), a replica failover (45%), migrate 64 slots (60%), stall a
// master (75%). A step that fails is logged; the schedule goes on.
func chaos(ctx context.Context, c *testcluster.Cluster, start time.Time, d time.Duration) {
	at := func(f float64) bool {
		t := time.NewTimer(time.Duration(f*float64(d)) - time.Since(start))
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var killed *testcluster.Node
	if !at(0.15) {
		return
	}
	step(ctx, "kill a master", func(ctx context.Context) error {
		m, err := c.Masters(ctx)
		if err != nil {
			return err
		}
		killed = m[0]
		if err := c.Kill(killed); err != nil {
			return err
		}
		return c.WaitHealthy(ctx) // its replica takes over
	})
	if !at(0.30) {
		return
	}
	if killed != nil {
		step(ctx, "restart the killed master (rejoins as a replica)", func(ctx context.Context) error {
			if err := c.Restart(ctx, killed); err != nil {
				return err
			}
			return c.WaitHealthy(ctx)
		})
	}
	if !at(0.45) {
		return
	}
	step(ctx, "replica failover (CLUSTER FAILOVER)", func(ctx context.Context) error {
		r, err := c.Replicas(ctx)
		if err != nil || len(r) == 0 {
			return fmt.Errorf("no replica: %v", err)
		}
		return c.Failover(ctx, r[0])
	})
	if !at(0.60) {
		return
	}
	step(ctx, "migrate 64 slots", func(ctx context.Context) error { return migrateSlots(ctx, c, 64) })
	if !at(0.75) {
		return
	}
	step(ctx, "stall a master for 5s (CLIENT PAUSE)", func(ctx context.Context) error { return stallMaster(ctx, c, 5*time.Second) })
}

// step runs one chaos step with 90s to finish, and logs how it ended.
func step(ctx context.Context, what string, f func(context.Context) error) {
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	start := time.Now()
	if err := f(sctx); err != nil {
		logf("chaos: %s FAILED: %v", what, err)
		return
	}
	logf("chaos: %s done in %v", what, time.Since(start).Round(time.Millisecond))
}

// migrateSlots moves slots 0 to n-1 from their owner to another master.
func migrateSlots(ctx context.Context, c *testcluster.Cluster, n int) error {
	m, err := c.Masters(ctx)
	if err != nil {
		return err
	}
	from, err := c.OwnerOf(ctx, 0)
	if err != nil {
		return err
	}
	to := m[0]
	if to.Addr == from.Addr {
		to = m[1]
	}
	slots := make([]int, n)
	for i := range slots {
		slots[i] = i
	}
	return c.MoveSlots(ctx, slots, to)
}

// stallMaster pauses the last master's clients for d (CLIENT PAUSE) and waits it out.
func stallMaster(ctx context.Context, c *testcluster.Cluster, d time.Duration) error {
	m, err := c.Masters(ctx)
	if err != nil {
		return err
	}
	if err := c.Pause(ctx, m[len(m)-1], d); err != nil {
		return err
	}
	time.Sleep(d)
	return nil
}

// report prints the totals, the errors by kind (marking kinds the scenario does not
// allow), the proxy's resources at start and end, and the p99 of every interval. It
// fails when an error of a kind not allowed occurred.
func report(o options, l *load, before, after resources) error {
	total := l.total
	fmt.Println("\n== soak report ==")
	fmt.Printf("duration %v, %d clients x pipeline %d\n", o.duration, o.workers, o.pipeline)
	fmt.Printf("commands served: %d (%.0f/s)\n", total.cmds.Load(), float64(total.cmds.Load())/o.duration.Seconds())
	var kinds []string
	for k := range total.errs {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	bad := false
	fmt.Println("errors by kind:")
	if len(kinds) == 0 {
		fmt.Println("  none")
	}
	for _, k := range kinds {
		mark := "allowed by the scenario"
		if !allowed[k] {
			mark, bad = "NOT ALLOWED", true
		}
		fmt.Printf("  %-20s %8d  %s\n", k, total.errs[k], mark)
	}
	fmt.Printf("proxy RSS: start (after 3s of load) %d KiB, end %d KiB\n", before.rss>>10, after.rss>>10)
	fmt.Printf("proxy goroutines: start (after 3s of load) %d, end %d\n", before.goroutines, after.goroutines)
	fmt.Println("pipeline p99 per interval:")
	for i, r := range l.rows {
		fmt.Printf("  %3d  %10v  (%d commands)\n", i+1, r.p99.Round(10*time.Microsecond), r.n)
	}
	if bad {
		return errors.New("errors of a kind the scenario does not allow")
	}
	return nil
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func rss(pid int) (int64, error) {
	out, err := exec.Command("ps", "-o", "rss=", "-p", strconv.Itoa(pid)).Output()
	if err != nil {
		return 0, err
	}
	kb, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	return kb << 10, err
}

func goroutines(admin string) (int, error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "go_goroutines" {
			v, err := strconv.ParseFloat(f[1], 64)
			return int(v), err
		}
	}
	return 0, errors.New("go_goroutines not in /metrics")
}

package netnslab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	vip   = netip.MustParseAddr("198.51.100.100")
	hosts = []string{"host1", "host2", "host3"}
)

func hostIP(i int) string { return fmt.Sprintf("198.51.100.%d", i+1) }

// buildProxy builds the daemon binary into dir.
func buildProxy(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "redis-carp-proxy")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/redis-carp-proxy/redis-carp-proxy/cmd/redis-carp-proxy")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// opResult is one iteration of the client loop.
type opResult struct {
	at  time.Time
	ok  bool
	err string
}

// client is the bounded read/write loop in the client namespace.
type client struct {
	rdb    *redis.Client
	prefix string // key prefix ("" is "failover")

	mu    sync.Mutex
	acked map[string]string // acknowledged SETs
	ops   []opResult
}

func (c *client) run(ctx context.Context, maxOps int) {
	for i := 0; i < maxOps && ctx.Err() == nil; i++ {
		prefix := c.prefix
		if prefix == "" {
			prefix = "failover"
		}
		key := fmt.Sprintf("%s:{%d}", prefix, i)
		val := fmt.Sprintf("v%d-%d", i, time.Now().UnixNano())
		octx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.rdb.Set(octx, key, val, 0).Err()
		var got string
		if err == nil {
			c.mu.Lock()
			c.acked[key] = val
			c.mu.Unlock()
			got, err = c.rdb.Get(octx, key).Result()
			if err == nil && got != val {
				err = fmt.Errorf("GET %s = %q right after SET %q", key, got, val)
			}
		}
		cancel()
		r := opResult{at: time.Now(), ok: err == nil}
		if err != nil {
			r.err = err.Error()
		}
		c.mu.Lock()
		c.ops = append(c.ops, r)
		c.mu.Unlock()
		if err != nil {
			// Timeouts already pace the loop; back off a little on fast errors.
			time.Sleep(10 * time.Millisecond)
		} else {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// firstOKAfter returns the time of the first answered iteration that started after t.
func (c *client) firstOKAfter(t time.Time) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.ops {
		if r.ok && r.at.After(t) {
			return r.at, true
		}
	}
	return time.Time{}, false
}

func (c *client) counts() (ok, failed int, lastErr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.ops {
		if r.ok {
			ok++
		} else {
			failed++
			lastErr = r.err
		}
	}
	return
}

// metric sums the samples of a metric (with labels matching want, a regexp of the label
// set's inside, e.g. `vip="198.51.100.101"`; "" for any) from a proxy's admin /metrics
// inside its namespace.
func metric(t *testing.T, lab *Lab, host int, name, want string) float64 {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return lab.Dial(ctx, hosts[host], network, addr)
		}}}
	resp, err := hc.Get("http://" + hostIP(host) + ":9479/metrics")
	if err != nil {
		t.Fatalf("%s metrics: %v", hosts[host], err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s metrics: %v", hosts[host], err)
	}
	ms := regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(name)+`(?:\{([^}]*)\})? (\S+)$`).FindAllSubmatch(b, -1)
	if ms == nil {
		t.Fatalf("%s metrics: no %s", hosts[host], name)
	}
	sum := 0.0
	for _, m := range ms {
		if want != "" && !regexp.MustCompile(want).Match(m[1]) {
			continue
		}
		v, err := strconv.ParseFloat(string(m[2]), 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	return sum
}

func accepted(t *testing.T, lab *Lab, host int) float64 {
	return metric(t, lab, host, "redis_carp_proxy_client_connections_accepted_total", "")
}

// logActivation logs the proxy's last "accepting clients" line: its activation latency
// (CARP state learned → listener open) and when it opened relative to the test seeing
// the VIP arrive (negative: before; the test polls every 25 ms).
func logActivation(t *testing.T, host, log string, vipSeen time.Time) {
	t.Helper()
	var last string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "active: accepting clients") {
			last = l
		}
	}
	m := regexp.MustCompile(`^time=(\S+) .* activation=(\S+)`).FindStringSubmatch(last)
	if m == nil {
		t.Errorf("%s proxy logged no activation", host)
		return
	}
	at, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil {
		t.Errorf("%s proxy log time %q: %v", host, m[1], err)
		return
	}
	t.Logf("%s proxy: activation latency %s; listener open %v after the test saw the VIP arrive",
		host, m[2], at.Sub(vipSeen).Round(time.Millisecond))
}

// probe dials VIP:6379 afresh from the client namespace every 10 ms and sends a SET (which
// the proxy must forward to the slot owner) until +OK comes back (at most d): the time the
// VIP is served again, without a client library's reconnect backoff in the way.
func probe(t *testing.T, lab *Lab, d time.Duration) time.Time {
	t.Helper()
	return probeAddr(t, lab, vip.String()+":6379", d)
}

// probeAddr is probe for any address.
func probeAddr(t *testing.T, lab *Lab, addr string, d time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		c, err := lab.Dial(ctx, "client", "tcp", addr)
		cancel()
		if err == nil {
			c.SetDeadline(time.Now().Add(200 * time.Millisecond))
			buf := make([]byte, 5)
			_, err = c.Write([]byte("*3\r\n$3\r\nSET\r\n$11\r\nprobe:{vip}\r\n$1\r\nx\r\n"))
			if err == nil {
				_, err = io.ReadFull(c, buf)
			}
			c.Close()
			if err == nil && string(buf) == "+OK\r\n" {
				return time.Now()
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s not served within %v", addr, d)
	return time.Time{}
}

// waitUntil polls cond every 25 ms for at most d and returns when it first held.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// startRedisCluster starts two Redis Cluster instances on each host (ports 7000 and 7001
// on the host address, node timeout 2 s), creates the cluster (masters on :7000, each
// replica on another host) and waits for cluster_state:ok everywhere.
func startRedisCluster(t *testing.T, ctx context.Context, lab *Lab, dir string) {
	t.Helper()
	// Redis Cluster: two instances per host, bound to the host address.
	var nodes []string
	for i, h := range hosts {
		for _, port := range []string{"7000", "7001"} {
			nd := filepath.Join(dir, h+"-"+port)
			if err := os.MkdirAll(nd, 0o755); err != nil {
				t.Fatal(err)
			}
			lab.Start(h, "redis-"+h+"-"+port, "redis-server", "--bind", hostIP(i), "--port", port,
				"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(nd, "nodes.conf"),
				"--cluster-node-timeout", "2000", "--dir", nd, "--save", "", "--appendonly", "no",
				"--protected-mode", "no", "--daemonize", "no", "--shutdown-timeout", "0")
			nodes = append(nodes, hostIP(i)+":"+port)
		}
	}
	for i, n := range nodes {
		host, port, _ := net.SplitHostPort(n)
		waitUntil(t, 10*time.Second, "redis "+n, func() bool {
			out, err := lab.Exec(ctx, hosts[i/2], "redis-cli", "-h", host, "-p", port, "ping")
			return err == nil && strings.Contains(out, "PONG")
		})
	}
	// Masters on :7000, replicas on :7001 (redis-cli puts replicas on other hosts).
	create := []string{"redis-cli", "--cluster", "create"}
	for _, n := range nodes {
		if strings.HasSuffix(n, ":7000") {
			create = append(create, n)
		}
	}
	for _, n := range nodes {
		if strings.HasSuffix(n, ":7001") {
			create = append(create, n)
		}
	}
	create = append(create, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := lab.Exec(ctx, "host1", create...); err != nil {
		t.Fatalf("cluster create: %v\n%s", err, out)
	}
	for i, n := range nodes {
		host, port, _ := net.SplitHostPort(n)
		waitUntil(t, 15*time.Second, "cluster_state:ok on "+n, func() bool {
			out, err := lab.Exec(ctx, hosts[i/2], "redis-cli", "-h", host, "-p", port, "cluster", "info")
			return err == nil && strings.Contains(out, "cluster_state:ok")
		})
	}
}

// TestFailoverUcarpVIP runs three hosts (network namespaces on one bridge), each with two
// Redis Cluster instances, ucarp and the proxy in vip mode, and a client in a fourth
// namespace running a bounded read/write loop against VIP:6379. It stops the master's
// ucarp (its down script removes the VIP), then takes the new master's link down, and
// checks that the client is served by each new master, no acknowledged write is lost, a
// BACKUP host's proxy never accepts a connection, and teardown leaves nothing behind.
func TestFailoverUcarpVIP(t *testing.T) {
	skipLab(t, "end-to-end CARP failover", "ucarp", "redis-server", "redis-cli", "go")
	testStart := time.Now()
	dir := t.TempDir()
	bin := buildProxy(t, dir)
	t.Logf("proxy built in %v", time.Since(testStart).Round(time.Millisecond))

	lab := newLANLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()

	startRedisCluster(t, ctx, lab, dir)
	t.Logf("cluster ok at %v", time.Since(testStart).Round(time.Millisecond))

	// The proxy in vip mode on every host; all start as BACKUP (nobody holds the VIP).
	// A BACKUP proxy answers 503 (not active), with a warm, complete slot map.
	f := &failoverRun{t: t, lab: lab}
	f.proxies = startProxies(t, lab, bin, func(i int) []string {
		return []string{"--listen", vip.String() + ":6379", "--carp-mode", "vip", "--vip", vip.String()}
	}, func(status int, body string) bool {
		return strings.Contains(body, "covers all 16384 slots")
	})
	f.startUcarps(dir)
	t.Logf("ucarp master host1 at %v", time.Since(testStart).Round(time.Millisecond))

	f.cl = newClient(lab, vip.String()+":6379", "")
	defer f.cl.rdb.Close()
	loopCtx, stopLoop := context.WithCancel(ctx)
	loopDone := make(chan struct{})
	go func() { defer close(loopDone); f.cl.run(loopCtx, 20000) }()
	defer func() { stopLoop(); <-loopDone }()

	f.checkServedByHost1Alone()
	time.Sleep(time.Second)
	host1Accepted := f.stopHost1Ucarp()
	f.cutHost2(host1Accepted)

	// Let the loop run on host3 a little (the cluster fails host2's master over), then stop.
	waitUntil(t, 15*time.Second, "client served again after the Redis failover", func() bool {
		_, ok := f.cl.firstOKAfter(time.Now().Add(-100 * time.Millisecond))
		return ok
	})
	time.Sleep(time.Second)
	stopLoop()
	<-loopDone
	ok, failed, lastErr := f.cl.counts()
	t.Logf("client loop: %d answered, %d failed (last error: %s)", ok, failed, lastErr)

	// No acknowledged write lost, read back through the VIP (host3).
	n := f.cl.verifyAcked(t, ctx, 15*time.Second, "after the failovers")
	t.Logf("all %d acknowledged writes read back; test body took %v", n, time.Since(testStart).Round(time.Millisecond))
}

// failoverRun is the lab of TestFailoverUcarpVIP: the hosts' proxies and ucarps, and
// the client.
type failoverRun struct {
	t       *testing.T
	lab     *Lab
	proxies []*Proc
	ucarps  []*Proc
	cl      *client
}

// has reports whether host i holds the VIP.
func (f *failoverRun) has(i int) bool {
	ok, err := f.lab.HasAddr(hosts[i], vip)
	if err != nil {
		f.t.Fatal(err)
	}
	return ok
}

// startUcarps starts ucarp on every host: the intended master (host1) first, the others
// 2 s after it holds the VIP (see netns-lab-notes).
func (f *failoverRun) startUcarps(dir string) {
	up, down := vipScripts(f.t, dir, 24)
	// advskew 0/50/200: host2 declares itself master after 3*(1+50/256) = 3.6 s without
	// adverts, host3 only after 5.3 s, so host3 sees host2's adverts first even when
	// libpcap hands them over late.
	advskew := []int{0, 50, 200}
	f.ucarps = make([]*Proc, len(hosts))
	startUcarp := func(i int) {
		f.ucarps[i] = f.lab.Start(hosts[i], "ucarp-"+hosts[i], "ucarp", "-i", "eth0", "-s", hostIP(i), "-v", "10",
			"-p", "rcpfailovertest", "-a", vip.String(), "-b", "1", "-k", strconv.Itoa(advskew[i]), "-r", "3",
			"-u", up, "-d", down, "-x", hosts[i], "-z", "-f", "none", "-P")
	}
	f.t.Cleanup(func() {
		if f.t.Failed() {
			for i, p := range f.ucarps {
				if p != nil {
					f.t.Logf("ucarp %s log:\n%s", hosts[i], p.Output())
				}
			}
		}
	})
	startUcarp(0)
	waitUntil(f.t, 10*time.Second, "VIP on host1", func() bool { return f.has(0) })
	time.Sleep(2 * time.Second)
	startUcarp(1)
	startUcarp(2)
}

// checkServedByHost1Alone waits until the client is served and checks that host1's
// proxy accepted it and the BACKUP proxies neither accepted a connection nor opened
// their listener.
func (f *failoverRun) checkServedByHost1Alone() {
	t := f.t
	waitUntil(t, 10*time.Second, "client served through host1", func() bool {
		_, ok := f.cl.firstOKAfter(time.Time{})
		return ok
	})
	if n := accepted(t, f.lab, 0); n < 1 {
		t.Fatalf("host1 (MASTER) proxy accepted %v connections", n)
	}
	for _, b := range []int{1, 2} {
		if n := accepted(t, f.lab, b); n != 0 {
			t.Fatalf("BACKUP %s proxy accepted %v connections", hosts[b], n)
		}
		if strings.Contains(f.proxies[b].Output(), "active: accepting clients") {
			t.Fatalf("BACKUP %s proxy opened its listener", hosts[b])
		}
	}
}

// stopHost1Ucarp is failover 1: a graceful stop of host1's ucarp, whose down script
// removes the VIP. host2 takes it and serves a fresh probe and the client; host1 closes
// its listener and drains; host3 stays BACKUP. It returns host1's accepted connections.
func (f *failoverRun) stopHost1Ucarp() (host1Accepted float64) {
	t := f.t
	t1 := time.Now()
	if err := f.ucarps[0].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	gone1 := waitUntil(t, 10*time.Second, "VIP gone from host1", func() bool { return !f.has(0) })
	moved1 := waitUntil(t, 15*time.Second, "VIP on host2", func() bool { return f.has(1) })
	if f.has(2) {
		t.Fatal("VIP on host3 as well")
	}
	pong1 := probe(t, f.lab, 10*time.Second)
	var served1 time.Time
	waitUntil(t, 15*time.Second, "client served by host2", func() bool {
		var ok bool
		served1, ok = f.cl.firstOKAfter(moved1)
		return ok
	})
	// The probe's connection and the client loop's.
	if n := accepted(t, f.lab, 1); n < 2 {
		t.Fatalf("host2 (new MASTER) proxy accepted %v connections, want the probe's and the client's", n)
	}
	logActivation(t, "host2", f.proxies[1].Output(), moved1)
	t.Logf("failover 1 (SIGTERM ucarp on host1): VIP left host1 after %v, on host2 after %v; VIP moved → first answered command: fresh-connection probe %v, client loop %v",
		gone1.Sub(t1).Round(time.Millisecond), moved1.Sub(t1).Round(time.Millisecond),
		pong1.Sub(moved1).Round(time.Millisecond), served1.Sub(moved1).Round(time.Millisecond))

	// Let the old master's late gratuitous ARPs pass (see netns-lab-notes) and check that
	// host1 closed its listener and accepts no more.
	time.Sleep(3 * time.Second)
	if a := metric(t, f.lab, 0, "redis_carp_proxy_active", ""); a != 0 {
		t.Fatalf("host1 proxy still active after losing the VIP")
	}
	if !strings.Contains(f.proxies[0].Output(), "inactive: listener closed, draining clients") {
		t.Fatal("host1 proxy did not close its listener and drain when it lost the VIP")
	}
	host1Accepted = accepted(t, f.lab, 0)
	if n := accepted(t, f.lab, 2); n != 0 {
		t.Fatalf("BACKUP host3 proxy accepted %v connections", n)
	}

	if strings.Contains(f.proxies[2].Output(), "active: accepting clients") {
		t.Fatal("BACKUP host3 proxy opened its listener")
	}
	return host1Accepted
}

// cutHost2 is failover 2: host2 dies (link down). host3 takes the VIP and serves a fresh
// probe and the client; host1 (ucarp stopped) accepts nothing more.
func (f *failoverRun) cutHost2(host1Accepted float64) {
	t := f.t
	t2 := time.Now()
	if err := f.lab.IP("-n", f.lab.NS("lan"), "link", "set", "p-host2", "down"); err != nil {
		t.Fatal(err)
	}
	moved2 := waitUntil(t, 20*time.Second, "VIP on host3", func() bool { return f.has(2) })
	pong2 := probe(t, f.lab, 20*time.Second) // may include the Redis failover if the probe key lived on host2
	var served2 time.Time
	waitUntil(t, 20*time.Second, "client served by host3", func() bool {
		var ok bool
		served2, ok = f.cl.firstOKAfter(moved2)
		return ok
	})
	if n := accepted(t, f.lab, 2); n < 2 {
		t.Fatalf("host3 (new MASTER) proxy accepted %v connections, want the probe's and the client's", n)
	}
	logActivation(t, "host3", f.proxies[2].Output(), moved2)
	t.Logf("failover 2 (host2 link down): VIP on host3 after %v; VIP moved → first answered command: fresh-connection probe %v, client loop %v",
		moved2.Sub(t2).Round(time.Millisecond), pong2.Sub(moved2).Round(time.Millisecond), served2.Sub(moved2).Round(time.Millisecond))
	if n := accepted(t, f.lab, 0); n != host1Accepted {
		t.Fatalf("host1 proxy (BACKUP, ucarp stopped) accepted %v more connections", n-host1Accepted)
	}
	if f.has(0) {
		t.Fatal("VIP back on host1")
	}
}

// newLANLab is the lab of the end-to-end tests: host1, host2 and host3 (198.51.100.1-3)
// and a client (198.51.100.50) on one bridge.
func newLANLab(t *testing.T) *Lab {
	lab := New(t)
	lab.AddNS("lan", "host1", "host2", "host3", "client")
	lab.Bridge("lan", map[string]string{
		"host1": "198.51.100.1/24", "host2": "198.51.100.2/24", "host3": "198.51.100.3/24",
		"client": "198.51.100.50/24",
	})
	return lab
}

// vipScripts writes ucarp's up and down scripts into dir: they add and remove the VIP,
// with prefix length bits, on the interface ucarp names.
func vipScripts(t *testing.T, dir string, bits int) (up, down string) {
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	up = filepath.Join(dir, "vip-up.sh")
	down = filepath.Join(dir, "vip-down.sh")
	for path, verb := range map[string]string{up: "add", down: "del"} {
		script := fmt.Sprintf("#!/bin/sh\nexec %s addr %s \"$2/%d\" dev \"$1\"\n", ipPath, verb, bits)
		if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return up, down
}

// newClient is a client loop's connection to addr from the client namespace (keys
// prefixed with prefix). No retries by the client library: an unanswered SET is never
// re-sent.
func newClient(lab *Lab, addr, prefix string) *client {
	return &client{prefix: prefix, acked: map[string]string{}, rdb: redis.NewClient(&redis.Options{
		Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1,
		DialTimeout: 250 * time.Millisecond, DialerRetries: 1, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return lab.Dial(ctx, "client", network, addr)
		}})}
}

// verifyAcked reads every acknowledged write back through the client's address. Errors
// (the cluster still failing over) are retried for up to d; a missing or different
// value is a loss. It returns the number of acknowledged writes.
func (c *client) verifyAcked(t *testing.T, ctx context.Context, d time.Duration, what string) int {
	t.Helper()
	c.mu.Lock()
	pending := make(map[string]string, len(c.acked))
	for k, v := range c.acked {
		pending[k] = v
	}
	c.mu.Unlock()
	n := len(pending)
	deadline := time.Now().Add(d)
	for len(pending) > 0 {
		next := map[string]string{}
		for k, want := range pending {
			got, err := c.rdb.Get(ctx, k).Result()
			switch {
			case err == redis.Nil:
				t.Errorf("acknowledged write lost: %s", k)
			case err != nil:
				next[k] = want
			case got != want:
				t.Errorf("acknowledged write %s = %q, want %q", k, got, want)
			}
		}
		pending = next
		if len(pending) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d acknowledged keys unreadable %s", len(pending), what)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return n
}

// startProxies starts the proxy binary on every host with the lab's common flags (the
// cluster's seeds, the admin listener on the host's address, short timeouts) plus
// flags(i), logs their output if the test fails, and waits until each host's /readyz
// answers as ready says.
func startProxies(t *testing.T, lab *Lab, bin string, flags func(i int) []string, ready func(status int, body string) bool) []*Proc {
	t.Helper()
	seeds := strings.Join([]string{hostIP(0) + ":7000", hostIP(1) + ":7000", hostIP(2) + ":7000"}, ",")
	proxies := make([]*Proc, len(hosts))
	for i, h := range hosts {
		args := append(flags(i), "--carp-poll-interval", "250ms", "--drain-timeout", "1s",
			"--cluster-seeds", seeds, "--admin-listen", hostIP(i)+":9479",
			"--backend-connect-timeout", "300ms", "--backend-read-timeout", "1s", "--slotmap-refresh-interval", "1s", "--shutdown-timeout", "1s")
		proxies[i] = lab.Start(h, "proxy-"+h, append([]string{bin}, args...)...)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, p := range proxies {
				t.Logf("proxy %s log:\n%s", hosts[i], p.Output())
			}
		}
	})
	for i := range hosts {
		waitUntil(t, 15*time.Second, "proxy admin on "+hosts[i], func() bool {
			hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true,
				DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					return lab.Dial(ctx, hosts[i], network, addr)
				}}}
			resp, err := hc.Get("http://" + hostIP(i) + ":9479/readyz")
			if err != nil {
				return false
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return ready(resp.StatusCode, string(b))
		})
	}
	return proxies
}

package netnslab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

// The active-active VIPs: VIP j has vhid j+1 and is preferred by host j.
var aaVIPs = []netip.Addr{
	netip.MustParseAddr("198.51.100.101"),
	netip.MustParseAddr("198.51.100.102"),
	netip.MustParseAddr("198.51.100.103"),
}

// gateEvent is a proxy opening or closing a VIP's listener, from its log.
type gateEvent struct {
	at     time.Time
	host   int
	vip    string
	active bool
}

var gateLine = regexp.MustCompile(`^time=(\S+) .*msg="(active: accepting clients|inactive: listener closed, draining clients)".* vip=(\S+)`)

// gateEvents parses every proxy's log for listener openings and closings.
func gateEvents(t *testing.T, logs []string) []gateEvent {
	t.Helper()
	var evs []gateEvent
	for h, log := range logs {
		for _, l := range strings.Split(log, "\n") {
			m := gateLine.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil {
				t.Fatalf("proxy log time %q: %v", m[1], err)
			}
			evs = append(evs, gateEvent{at: at, host: h, vip: m[3], active: strings.HasPrefix(m[2], "active")})
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at.Before(evs[j].at) })
	return evs
}

// interval is a time a proxy had a VIP's listener open.
type interval struct {
	host       int
	from, till time.Time
}

// servedIntervals turns the events into, per VIP, the intervals each host served it (an
// interval still open at end is closed there).
func servedIntervals(evs []gateEvent, end time.Time) map[string][]interval {
	open := map[[2]string]time.Time{}
	out := map[string][]interval{}
	for _, e := range evs {
		k := [2]string{strconv.Itoa(e.host), e.vip}
		if e.active {
			if _, ok := open[k]; !ok {
				open[k] = e.at
			}
			continue
		}
		if from, ok := open[k]; ok {
			out[e.vip] = append(out[e.vip], interval{e.host, from, e.at})
			delete(open, k)
		}
	}
	for k, from := range open {
		h, _ := strconv.Atoi(k[0])
		out[k[1]] = append(out[k[1]], interval{h, from, end})
	}
	return out
}

// overlap is a time two hosts served the same VIP at once.
type overlap struct {
	vip        string
	a, b       int
	from, till time.Time
}

func (o overlap) String() string {
	return fmt.Sprintf("%s served by %s and %s for %v from %s", o.vip, hosts[o.a], hosts[o.b],
		o.till.Sub(o.from).Round(time.Millisecond), o.from.Format("15:04:05.000"))
}

// overlaps returns the times two different hosts served the same VIP at once.
func overlaps(iv map[string][]interval) []overlap {
	var out []overlap
	for vip, list := range iv {
		for i := range list {
			for j := i + 1; j < len(list); j++ {
				a, b := list[i], list[j]
				if a.host == b.host {
					continue
				}
				from, till := a.from, a.till
				if b.from.After(from) {
					from = b.from
				}
				if b.till.Before(till) {
					till = b.till
				}
				if from.Before(till) {
					out = append(out, overlap{vip, a.host, b.host, from, till})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].from.Before(out[j].from) })
	return out
}

// TestActiveActiveUcarp runs three hosts, each CARP MASTER (ucarp, one instance per VIP,
// advskew from the proxy's own rotation, preemption on) of its own VIP and BACKUP of the
// two others, one proxy per host serving whichever VIPs its host holds, and one client per
// VIP writing continuously. host2's link goes down: its VIP moves to the next host of the
// rotation, which then serves two; the link comes back: host2 takes its VIP back. It
// checks that every VIP is served by the expected host at each stage, no VIP is ever
// served by two proxies, every acknowledged write reads back, and logs the time from
// link-down to the moved VIP being served.
func TestActiveActiveUcarp(t *testing.T) {
	if why := Unavailable("ucarp", "redis-server", "redis-cli", "go"); why != "" {
		t.Skip("end-to-end active-active CARP: " + why)
	}
	if testing.Short() {
		t.Skip("end-to-end active-active CARP: skipped in -short mode")
	}
	testStart := time.Now()
	dir := t.TempDir()
	bin := buildProxy(t, dir)
	ipPath, _ := exec.LookPath("ip")

	lab := New(t)
	lab.AddNS("lan", "host1", "host2", "host3", "client")
	lab.Bridge("lan", map[string]string{
		"host1": "198.51.100.1/24", "host2": "198.51.100.2/24", "host3": "198.51.100.3/24",
		"client": "198.51.100.50/24",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	startRedisCluster(t, ctx, lab, dir)
	t.Logf("cluster ok at %v", time.Since(testStart).Round(time.Millisecond))

	// The proxy's configuration, as on the appliance: one list of VIPs, the host's place in
	// the rotation. The test takes the advskews from it, as setup does.
	var specs []string
	for j, v := range aaVIPs {
		specs = append(specs, fmt.Sprintf("%s@%d", v, j+1))
	}
	rot := config.Default()
	for j, v := range aaVIPs {
		rot.VIPs = append(rot.VIPs, config.VIPSpec{Addr: v.String(), VHID: j + 1})
	}
	advskew := func(host, vip int) int {
		rot.CarpHostIndex = host + 1
		return rot.Advskew(vip)
	}
	// Nobody holds a VIP yet: 503, one line per VIP, each with a warm, complete map.
	proxies := startProxies(t, lab, bin, func(i int) []string {
		return []string{"--listen", ":6379", "--vips", strings.Join(specs, ","),
			"--carp-mode", "vip", "--carp-interface", "eth0", "--carp-host-index", strconv.Itoa(i + 1)}
	}, func(status int, body string) bool {
		return status == 503 && strings.Count(body, "not active (CARP state BACKUP), slot map epoch") == 3
	})

	// ucarp: one instance per host and VIP. The preferred host of each VIP first, the
	// others 2 s later (see netns-lab-notes).
	up := filepath.Join(dir, "vip-up.sh")
	down := filepath.Join(dir, "vip-down.sh")
	os.WriteFile(up, []byte("#!/bin/sh\nexec "+ipPath+" addr add \"$2/32\" dev \"$1\"\n"), 0o755)
	os.WriteFile(down, []byte("#!/bin/sh\nexec "+ipPath+" addr del \"$2/32\" dev \"$1\"\n"), 0o755)
	// ucarp declares the master dead after deadratio × advbase + advskew/256 s, so the
	// rotation's advskews 0/100/200 separate the backups by only 0.39 s, and its libpcap
	// hands adverts over up to 1 s late: both backups took the VIP in a first run. The lab
	// therefore also stretches the dead ratio by the rank (3, 4, 5: 1.4 s apart); carp(4)
	// reads adverts in the kernel and needs no such help.
	ucarps := map[[2]int]*Proc{}
	startUcarp := func(host, vip int) {
		skew := advskew(host, vip)
		ucarps[[2]int{host, vip}] = lab.Start(hosts[host], fmt.Sprintf("ucarp-%s-vhid%d", hosts[host], vip+1), "ucarp",
			"-i", "eth0", "-s", hostIP(host), "-v", strconv.Itoa(vip+1), "-p", "rcpactiveactive",
			"-a", aaVIPs[vip].String(), "-b", "1", "-k", strconv.Itoa(skew), "-r", strconv.Itoa(3+skew/rot.AdvskewStep()),
			"-u", up, "-d", down, "-x", hosts[host], "-z", "-f", "none", "-P")
	}
	t.Cleanup(func() {
		if t.Failed() {
			for k, p := range ucarps {
				t.Logf("ucarp %s vhid %d log:\n%s", hosts[k[0]], k[1]+1, p.Output())
			}
		}
	})
	has := func(host, vip int) bool {
		ok, err := lab.HasAddr(hosts[host], aaVIPs[vip])
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	holders := func(vip int) []int {
		var out []int
		for h := range hosts {
			if has(h, vip) {
				out = append(out, h)
			}
		}
		return out
	}
	for j := range aaVIPs {
		if advskew(j, j) != 0 {
			t.Fatalf("host %d is not preferred (advskew 0) for VIP %d: %d", j+1, j+1, advskew(j, j))
		}
		startUcarp(j, j)
	}
	for j := range aaVIPs {
		waitUntil(t, 10*time.Second, fmt.Sprintf("VIP %s on %s", aaVIPs[j], hosts[j]), func() bool { return has(j, j) })
	}
	time.Sleep(2 * time.Second)
	for h := range hosts {
		for j := range aaVIPs {
			if h != j {
				startUcarp(h, j)
			}
		}
	}
	t.Logf("ucarp: each host master of its own VIP at %v", time.Since(testStart).Round(time.Millisecond))

	// active reads one VIP's active gauge of a host's proxy.
	active := func(host, vip int) float64 {
		return metric(t, lab, host, "redis_carp_proxy_active", `vip="`+regexp.QuoteMeta(aaVIPs[vip].String())+`"`)
	}
	acceptedOn := func(host, vip int) float64 {
		return metric(t, lab, host, "redis_carp_proxy_client_connections_accepted_total", `vip="`+regexp.QuoteMeta(aaVIPs[vip].String())+`"`)
	}
	var downState atomic.Bool // host2's link is down: its proxy cannot be asked
	// servedBy waits until exactly the hosts in want serve VIP vip (the address and the
	// proxy's listener), and no other host does.
	servedBy := func(vip, want int, d time.Duration) time.Time {
		return waitUntil(t, d, fmt.Sprintf("VIP %s held and served by %s alone", aaVIPs[vip], hosts[want]), func() bool {
			hs := holders(vip)
			if len(hs) != 1 || hs[0] != want {
				return false
			}
			for h := range hosts {
				if h == 1 && downState.Load() {
					continue // unreachable: checked from its log at the end
				}
				if (active(h, vip) == 1) != (h == want) {
					return false
				}
			}
			return true
		})
	}
	for j := range aaVIPs {
		servedBy(j, j, 10*time.Second)
	}

	// One client per VIP, each a bounded write+read loop from the client namespace. No
	// retries by the client library: an unanswered SET is never re-sent.
	clients := make([]*client, len(aaVIPs))
	loopCtx, stopLoops := context.WithCancel(ctx)
	loopsDone := make(chan struct{}, len(aaVIPs))
	for j, v := range aaVIPs {
		clients[j] = &client{prefix: fmt.Sprintf("aa%d", j+1), acked: map[string]string{}, rdb: redis.NewClient(&redis.Options{
			Addr: v.String() + ":6379", Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1,
			DialTimeout: 250 * time.Millisecond, DialerRetries: 1, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond,
			Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return lab.Dial(ctx, "client", network, addr)
			}})}
		defer clients[j].rdb.Close()
		go func(c *client) { defer func() { loopsDone <- struct{}{} }(); c.run(loopCtx, 20000) }(clients[j])
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopLoops()
			for range aaVIPs {
				<-loopsDone
			}
		}
	}
	defer stop()
	for j, c := range clients {
		waitUntil(t, 10*time.Second, "client of "+aaVIPs[j].String()+" served", func() bool {
			_, ok := c.firstOKAfter(time.Time{})
			return ok
		})
	}
	// Each VIP's client was accepted by its own host only.
	for j := range aaVIPs {
		for h := range hosts {
			n := acceptedOn(h, j)
			if h == j && n < 1 || h != j && n != 0 {
				t.Fatalf("%s accepted %v connections on %s", hosts[h], n, aaVIPs[j])
			}
		}
	}
	time.Sleep(time.Second)

	// host2 dies: its link goes down. VIP 2 moves to the next host of the rotation.
	next := -1
	for h := range hosts {
		if h != 1 && (next < 0 || advskew(h, 1) < advskew(next, 1)) {
			next = h
		}
	}
	before := acceptedOn(next, 1)
	tDown := time.Now()
	if err := lab.IP("-n", lab.NS("lan"), "link", "set", "p-host2", "down"); err != nil {
		t.Fatal(err)
	}
	downState.Store(true)
	moved := waitUntil(t, 20*time.Second, fmt.Sprintf("VIP %s on %s", aaVIPs[1], hosts[next]), func() bool { return has(next, 1) })
	served := probeAddr(t, lab, aaVIPs[1].String()+":6379", 20*time.Second)
	if n := acceptedOn(next, 1); n <= before {
		t.Fatalf("%s did not accept the probe on %s", hosts[next], aaVIPs[1])
	}
	t.Logf("link-down of host2 → VIP %s on %s after %v, served (first answered SET on a fresh connection) after %v",
		aaVIPs[1], hosts[next], moved.Sub(tDown).Round(time.Millisecond), served.Sub(tDown).Round(time.Millisecond))
	logActivation(t, hosts[next], proxies[next].Output(), moved)
	// The survivor serves two VIPs, the other keeps its own.
	for j := range aaVIPs {
		want := j
		if j == 1 {
			want = next
		}
		t.Logf("VIP %s held by hosts %v while host2 is cut off (index 1 is host2)", aaVIPs[j], holders(j))
		if active(want, j) != 1 {
			t.Fatalf("%s does not serve %s after host2's link went down", hosts[want], aaVIPs[j])
		}
		for h := range hosts {
			if h != want && h != 1 && active(h, j) != 0 {
				t.Fatalf("%s serves %s as well", hosts[h], aaVIPs[j])
			}
		}
	}
	for j, c := range clients {
		waitUntil(t, 20*time.Second, "client of "+aaVIPs[j].String()+" served after the link-down", func() bool {
			_, ok := c.firstOKAfter(served)
			return ok
		})
	}
	// Let the cluster fail host2's master over and the loops run on the survivors.
	for j, c := range clients {
		waitUntil(t, 15*time.Second, "client of "+aaVIPs[j].String()+" served after the Redis failover", func() bool {
			_, ok := c.firstOKAfter(time.Now().Add(-100 * time.Millisecond))
			return ok
		})
	}
	time.Sleep(3 * time.Second) // late gratuitous ARPs pass (netns-lab-notes)

	// host2 comes back: with preemption it takes VIP 2 back (ucarp waits about 10 s after
	// link-up before it speaks again).
	tUp := time.Now()
	if err := lab.IP("-n", lab.NS("lan"), "link", "set", "p-host2", "up"); err != nil {
		t.Fatal(err)
	}
	downState.Store(false)
	back := waitUntil(t, 40*time.Second, fmt.Sprintf("VIP %s back on host2 alone", aaVIPs[1]), func() bool {
		hs := holders(1)
		return len(hs) == 1 && hs[0] == 1
	})
	before = acceptedOn(1, 1)
	servedBack := probeAddr(t, lab, aaVIPs[1].String()+":6379", 20*time.Second)
	t.Logf("link-up of host2 → VIP %s back on host2 after %v, served there after %v",
		aaVIPs[1], back.Sub(tUp).Round(time.Millisecond), servedBack.Sub(tUp).Round(time.Millisecond))
	for j := range aaVIPs {
		servedBy(j, j, 10*time.Second)
	}
	if n := acceptedOn(1, 1); n <= before {
		t.Fatalf("host2 did not accept the probe on %s after taking it back", aaVIPs[1])
	}
	for j, c := range clients {
		waitUntil(t, 20*time.Second, "client of "+aaVIPs[j].String()+" served after host2 came back", func() bool {
			_, ok := c.firstOKAfter(servedBack)
			return ok
		})
	}
	time.Sleep(time.Second)
	stop()
	end := time.Now()

	// No VIP was ever served by two proxies.
	logs := make([]string, len(proxies))
	for i, p := range proxies {
		logs[i] = p.Output()
	}
	iv := servedIntervals(gateEvents(t, logs), end)
	for j := range aaVIPs {
		var b strings.Builder
		for _, x := range iv[aaVIPs[j].String()] {
			fmt.Fprintf(&b, " %s %s–%s;", hosts[x.host], x.from.Sub(testStart).Round(time.Millisecond), x.till.Sub(testStart).Round(time.Millisecond))
		}
		t.Logf("VIP %s served by:%s", aaVIPs[j], b.String())
	}
	for _, o := range overlaps(iv) {
		// When host2 preempts, it takes the VIP on hearing host3's advert and host3 lets go
		// on hearing host2's: ucarp's libpcap may deliver that one up to 1 s late, so both
		// hosts hold the VIP (and their proxies listen) for that long. Anything else is a
		// VIP served twice.
		if o.vip == aaVIPs[1].String() && o.from.After(tUp) && o.till.Sub(o.from) <= 1500*time.Millisecond {
			t.Logf("preemption overlap (CARP's own, both hosts held the VIP): %s", o)
			continue
		}
		t.Errorf("a VIP was served by two proxies at once: %s", o)
	}

	// Every acknowledged write reads back, through its own VIP.
	total := 0
	for j, c := range clients {
		ok, failed, lastErr := c.counts()
		t.Logf("client of %s: %d answered, %d failed (last error: %s)", aaVIPs[j], ok, failed, lastErr)
		c.mu.Lock()
		pending := make(map[string]string, len(c.acked))
		for k, v := range c.acked {
			pending[k] = v
		}
		c.mu.Unlock()
		total += len(pending)
		deadline := time.Now().Add(15 * time.Second)
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
					t.Fatalf("%d acknowledged keys of %s unreadable", len(pending), aaVIPs[j])
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
	t.Logf("all %d acknowledged writes read back; test body took %v", total, time.Since(testStart).Round(time.Millisecond))
	for _, p := range ucarps {
		p.Signal(syscall.SIGTERM)
	}
}

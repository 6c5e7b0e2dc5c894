package netnslab

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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
	skipLab(t, "end-to-end active-active CARP", "ucarp", "redis-server", "redis-cli", "go")
	testStart := time.Now()
	dir := t.TempDir()
	bin := buildProxy(t, dir)

	lab := newLANLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	startRedisCluster(t, ctx, lab, dir)
	t.Logf("cluster ok at %v", time.Since(testStart).Round(time.Millisecond))

	// The proxy's configuration, as on the appliance: one list of VIPs, the host's place in
	// the rotation. The test takes the advskews from it, as setup does.
	a := &aaRun{t: t, lab: lab, rot: config.Default()}
	var specs []string
	for j, v := range aaVIPs {
		specs = append(specs, fmt.Sprintf("%s@%d", v, j+1))
		a.rot.VIPs = append(a.rot.VIPs, config.VIPSpec{Addr: v.String(), VHID: j + 1})
	}
	// Nobody holds a VIP yet: 503, one line per VIP, each with a warm, complete map.
	a.proxies = startProxies(t, lab, bin, func(i int) []string {
		return []string{"--listen", ":6379", "--vips", strings.Join(specs, ","),
			"--carp-mode", "vip", "--carp-interface", "eth0", "--carp-host-index", strconv.Itoa(i + 1)}
	}, func(status int, body string) bool {
		return status == 503 && strings.Count(body, "not active (CARP state BACKUP), slot map epoch") == 3
	})
	a.startUcarps(dir)
	t.Logf("ucarp: each host master of its own VIP at %v", time.Since(testStart).Round(time.Millisecond))
	for j := range aaVIPs {
		a.servedBy(j, j, 10*time.Second)
	}

	stop := a.startClients(ctx)
	defer stop()
	a.checkEachOwnHost()
	time.Sleep(time.Second)

	a.cutHost2()
	tUp := a.reconnectHost2()
	time.Sleep(time.Second)
	stop()
	end := time.Now()

	a.checkNeverServedTwice(testStart, tUp, end)

	// Every acknowledged write reads back, through its own VIP.
	total := 0
	for j, c := range a.clients {
		ok, failed, lastErr := c.counts()
		t.Logf("client of %s: %d answered, %d failed (last error: %s)", aaVIPs[j], ok, failed, lastErr)
		total += c.verifyAcked(t, ctx, 15*time.Second, "through "+aaVIPs[j].String())
	}
	t.Logf("all %d acknowledged writes read back; test body took %v", total, time.Since(testStart).Round(time.Millisecond))
	for _, p := range a.ucarps {
		p.Signal(syscall.SIGTERM)
	}
}

// aaRun is the lab of TestActiveActiveUcarp: the rotation, the hosts' proxies and ucarps
// (one per host and VIP), and one client per VIP.
type aaRun struct {
	t       *testing.T
	lab     *Lab
	rot     *config.Config
	proxies []*Proc
	ucarps  map[[2]int]*Proc // [host, vip]
	clients []*client
	down    atomic.Bool // host2's link is down: its proxy cannot be asked
}

// advskew is the advskew of host for VIP vip in the proxy's rotation.
func (a *aaRun) advskew(host, vip int) int {
	a.rot.CarpHostIndex = host + 1
	return a.rot.Advskew(vip)
}

// has reports whether host holds VIP vip.
func (a *aaRun) has(host, vip int) bool {
	ok, err := a.lab.HasAddr(hosts[host], aaVIPs[vip])
	if err != nil {
		a.t.Fatal(err)
	}
	return ok
}

// holders are the hosts that hold VIP vip.
func (a *aaRun) holders(vip int) []int {
	var out []int
	for h := range hosts {
		if a.has(h, vip) {
			out = append(out, h)
		}
	}
	return out
}

// active reads one VIP's active gauge of a host's proxy.
func (a *aaRun) active(host, vip int) float64 {
	return metric(a.t, a.lab, host, "redis_carp_proxy_active", `vip="`+regexp.QuoteMeta(aaVIPs[vip].String())+`"`)
}

// acceptedOn is the number of clients a host's proxy accepted on VIP vip.
func (a *aaRun) acceptedOn(host, vip int) float64 {
	return metric(a.t, a.lab, host, "redis_carp_proxy_client_connections_accepted_total", `vip="`+regexp.QuoteMeta(aaVIPs[vip].String())+`"`)
}

// servedBy waits until exactly the host want serves VIP vip (the address and the
// proxy's listener), and no other host does.
func (a *aaRun) servedBy(vip, want int, d time.Duration) time.Time {
	return waitUntil(a.t, d, fmt.Sprintf("VIP %s held and served by %s alone", aaVIPs[vip], hosts[want]), func() bool {
		hs := a.holders(vip)
		if len(hs) != 1 || hs[0] != want {
			return false
		}
		for h := range hosts {
			if h == 1 && a.down.Load() {
				continue // unreachable: checked from its log at the end
			}
			if (a.active(h, vip) == 1) != (h == want) {
				return false
			}
		}
		return true
	})
}

// startUcarps starts one ucarp per host and VIP, with the rotation's advskew: the
// preferred host of each VIP first, the others 2 s after every VIP is on its preferred
// host (see netns-lab-notes).
func (a *aaRun) startUcarps(dir string) {
	t := a.t
	up, down := vipScripts(t, dir, 32)
	// ucarp declares the master dead after deadratio × advbase + advskew/256 s, so the
	// rotation's advskews 0/100/200 separate the backups by only 0.39 s, and its libpcap
	// hands adverts over up to 1 s late: both backups took the VIP in a first run. The lab
	// therefore also stretches the dead ratio by the rank (3, 4, 5: 1.4 s apart); carp(4)
	// reads adverts in the kernel and needs no such help.
	a.ucarps = map[[2]int]*Proc{}
	startUcarp := func(host, vip int) {
		skew := a.advskew(host, vip)
		a.ucarps[[2]int{host, vip}] = a.lab.Start(hosts[host], fmt.Sprintf("ucarp-%s-vhid%d", hosts[host], vip+1), "ucarp",
			"-i", "eth0", "-s", hostIP(host), "-v", strconv.Itoa(vip+1), "-p", "rcpactiveactive",
			"-a", aaVIPs[vip].String(), "-b", "1", "-k", strconv.Itoa(skew), "-r", strconv.Itoa(3+skew/a.rot.AdvskewStep()),
			"-u", up, "-d", down, "-x", hosts[host], "-z", "-f", "none", "-P")
	}
	t.Cleanup(func() {
		if t.Failed() {
			for k, p := range a.ucarps {
				t.Logf("ucarp %s vhid %d log:\n%s", hosts[k[0]], k[1]+1, p.Output())
			}
		}
	})
	for j := range aaVIPs {
		if a.advskew(j, j) != 0 {
			t.Fatalf("host %d is not preferred (advskew 0) for VIP %d: %d", j+1, j+1, a.advskew(j, j))
		}
		startUcarp(j, j)
	}
	for j := range aaVIPs {
		waitUntil(t, 10*time.Second, fmt.Sprintf("VIP %s on %s", aaVIPs[j], hosts[j]), func() bool { return a.has(j, j) })
	}
	time.Sleep(2 * time.Second)
	for h := range hosts {
		for j := range aaVIPs {
			if h != j {
				startUcarp(h, j)
			}
		}
	}
}

// startClients starts one client loop per VIP, a bounded write+read loop from the
// client namespace, and waits until each is served. stop ends the loops (once).
func (a *aaRun) startClients(ctx context.Context) (stop func()) {
	a.clients = make([]*client, len(aaVIPs))
	loopCtx, stopLoops := context.WithCancel(ctx)
	loopsDone := make(chan struct{}, len(aaVIPs))
	for j, v := range aaVIPs {
		a.clients[j] = newClient(a.lab, v.String()+":6379", fmt.Sprintf("aa%d", j+1))
		a.t.Cleanup(func() { a.clients[j].rdb.Close() })
		go func(c *client) { defer func() { loopsDone <- struct{}{} }(); c.run(loopCtx, 20000) }(a.clients[j])
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			stopLoops()
			for range aaVIPs {
				<-loopsDone
			}
		}
	}
	for j, c := range a.clients {
		waitUntil(a.t, 10*time.Second, "client of "+aaVIPs[j].String()+" served", func() bool {
			_, ok := c.firstOKAfter(time.Time{})
			return ok
		})
	}
	return stop
}

// checkEachOwnHost: each VIP's client was accepted by its own host only.
func (a *aaRun) checkEachOwnHost() {
	for j := range aaVIPs {
		for h := range hosts {
			n := a.acceptedOn(h, j)
			if h == j && n < 1 || h != j && n != 0 {
				a.t.Fatalf("%s accepted %v connections on %s", hosts[h], n, aaVIPs[j])
			}
		}
	}
}

// cutHost2: host2's link goes down. VIP 2 moves to the next host of the rotation, which
// then serves two VIPs while the other keeps its own, and every client is served again,
// also after the cluster has failed host2's master over.
func (a *aaRun) cutHost2() {
	t := a.t
	next := -1
	for h := range hosts {
		if h != 1 && (next < 0 || a.advskew(h, 1) < a.advskew(next, 1)) {
			next = h
		}
	}
	before := a.acceptedOn(next, 1)
	tDown := time.Now()
	if err := a.lab.IP("-n", a.lab.NS("lan"), "link", "set", "p-host2", "down"); err != nil {
		t.Fatal(err)
	}
	a.down.Store(true)
	moved := waitUntil(t, 20*time.Second, fmt.Sprintf("VIP %s on %s", aaVIPs[1], hosts[next]), func() bool { return a.has(next, 1) })
	served := probeAddr(t, a.lab, aaVIPs[1].String()+":6379", 20*time.Second)
	if n := a.acceptedOn(next, 1); n <= before {
		t.Fatalf("%s did not accept the probe on %s", hosts[next], aaVIPs[1])
	}
	t.Logf("link-down of host2 → VIP %s on %s after %v, served (first answered SET on a fresh connection) after %v",
		aaVIPs[1], hosts[next], moved.Sub(tDown).Round(time.Millisecond), served.Sub(tDown).Round(time.Millisecond))
	logActivation(t, hosts[next], a.proxies[next].Output(), moved)
	// The survivor serves two VIPs, the other keeps its own.
	for j := range aaVIPs {
		want := j
		if j == 1 {
			want = next
		}
		t.Logf("VIP %s held by hosts %v while host2 is cut off (index 1 is host2)", aaVIPs[j], a.holders(j))
		if a.active(want, j) != 1 {
			t.Fatalf("%s does not serve %s after host2's link went down", hosts[want], aaVIPs[j])
		}
		for h := range hosts {
			if h != want && h != 1 && a.active(h, j) != 0 {
				t.Fatalf("%s serves %s as well", hosts[h], aaVIPs[j])
			}
		}
	}
	for j, c := range a.clients {
		waitUntil(t, 20*time.Second, "client of "+aaVIPs[j].String()+" served after the link-down", func() bool {
			_, ok := c.firstOKAfter(served)
			return ok
		})
	}
	// Let the cluster fail host2's master over and the loops run on the survivors.
	for j, c := range a.clients {
		waitUntil(t, 15*time.Second, "client of "+aaVIPs[j].String()+" served after the Redis failover", func() bool {
			_, ok := c.firstOKAfter(time.Now().Add(-100 * time.Millisecond))
			return ok
		})
	}
	time.Sleep(3 * time.Second) // late gratuitous ARPs pass (netns-lab-notes)
}

// reconnectHost2: host2 comes back; with preemption it takes VIP 2 back (ucarp waits
// about 10 s after link-up before it speaks again), serves it, and every VIP is served
// by its own host again. It returns when the link came up.
func (a *aaRun) reconnectHost2() (tUp time.Time) {
	t := a.t
	tUp = time.Now()
	if err := a.lab.IP("-n", a.lab.NS("lan"), "link", "set", "p-host2", "up"); err != nil {
		t.Fatal(err)
	}
	a.down.Store(false)
	back := waitUntil(t, 40*time.Second, fmt.Sprintf("VIP %s back on host2 alone", aaVIPs[1]), func() bool {
		hs := a.holders(1)
		return len(hs) == 1 && hs[0] == 1
	})
	before := a.acceptedOn(1, 1)
	servedBack := probeAddr(t, a.lab, aaVIPs[1].String()+":6379", 20*time.Second)
	t.Logf("link-up of host2 → VIP %s back on host2 after %v, served there after %v",
		aaVIPs[1], back.Sub(tUp).Round(time.Millisecond), servedBack.Sub(tUp).Round(time.Millisecond))
	for j := range aaVIPs {
		a.servedBy(j, j, 10*time.Second)
	}
	if n := a.acceptedOn(1, 1); n <= before {
		t.Fatalf("host2 did not accept the probe on %s after taking it back", aaVIPs[1])
	}
	for j, c := range a.clients {
		waitUntil(t, 20*time.Second, "client of "+aaVIPs[j].String()+" served after host2 came back", func() bool {
			_, ok := c.firstOKAfter(servedBack)
			return ok
		})
	}
	return tUp
}

// checkNeverServedTwice: from the proxies' logs, no VIP was ever served by two proxies
// at once, but for CARP's own overlap when host2 preempts after tUp.
func (a *aaRun) checkNeverServedTwice(testStart, tUp, end time.Time) {
	t := a.t
	logs := make([]string, len(a.proxies))
	for i, p := range a.proxies {
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
}

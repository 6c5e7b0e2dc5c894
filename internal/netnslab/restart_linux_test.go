package netnslab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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
)

// restartGapBound is what the test asserts on the longest gap between two answers of a
// client across an in-place restart: issue 24's target is 50 ms, which the log reports
// against; a loaded CI machine gets more room.
const restartGapBound = 250 * time.Millisecond

// TestRestartUnderLoad: the proxy on host1 serves the VIP (carp(4) emulated, host1
// preferred) to eight go-redis clients (one persistent connection each, no retries) and
// two phpredis clients (pconnect) through the VIP, while it is (a) restarted in place as
// the rc script does (SIGUSR2, SIGTERM, the new process started at once), (b) replaced by
// another build (another version string) the same way, (d) sent a SIGHUP after its
// configuration changed a key that needs a restart (it starts its successor itself), and
// then, for the comparison, (e) restarted the way it was before issue 24 (SIGTERM, then a
// new process, no hand-over). Issue 24's targets for (a), (b) and (d): no failed command
// and no reconnect, and no client waiting more than 50 ms for an answer.
func TestRestartUnderLoad(t *testing.T) {
	skipLab(t, "restart lab", "redis-server", "redis-cli", "go", "sysctl")
	testStart := time.Now()
	dir := t.TempDir()
	bin := buildProxy(t, dir)
	newer := filepath.Join(dir, "redis-carp-proxy-newer")
	if out, err := exec.Command("go", "build", "-ldflags", "-X github.com/redis-carp-proxy/redis-carp-proxy/proxy.Version=9.9.9-lab",
		"-o", newer, "github.com/redis-carp-proxy/redis-carp-proxy/cmd/redis-carp-proxy").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	lab := newLANLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	startRedisCluster(t, ctx, lab, dir)

	emu := newCarpEmu(t, lab, dir, []int{0, 50, 100})
	emuCtx, stopEmu := context.WithCancel(ctx)
	emuDone := make(chan struct{})
	go func() { defer close(emuDone); emu.run(emuCtx) }()
	defer func() { stopEmu(); <-emuDone }()

	// host1's proxy, from a configuration file (SIGHUP rereads it), with its hand-over
	// socket in a 0700 directory.
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "host1.conf")
	seeds := strings.Join([]string{hostIP(0) + ":7000", hostIP(1) + ":7000", hostIP(2) + ":7000"}, ",")
	body := fmt.Sprintf("listen %s:6379\nvip %s\ncarp-mode vip\ncarp-interface eth0\ncarp-poll-interval 250ms\n"+
		"cluster-seeds %s\nadmin-listen %s:9479\ndrain-timeout 2s\nhandoff-socket %s\nhandoff-wait 10s\n"+
		"backend-connect-timeout 300ms\nbackend-read-timeout 1s\nslotmap-refresh-interval 1s\n",
		vip, vip, seeds, hostIP(0), filepath.Join(run, "host1.sock"))
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	var procs []*Proc
	start := func(b string) *Proc {
		p := lab.Start("host1", fmt.Sprintf("proxy-%d", len(procs)), b, "-c", conf)
		procs = append(procs, p)
		return p
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range procs {
				t.Logf("%s log:\n%s", p.Name, p.Output())
			}
		}
	})
	ready := func(what string) {
		t.Helper()
		hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return lab.Dial(ctx, "host1", network, addr)
			}}}
		waitUntil(t, 20*time.Second, what, func() bool {
			resp, err := hc.Get("http://" + hostIP(0) + ":9479/readyz")
			if err != nil {
				return false
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode == 200 && strings.Contains(string(b), "covers all 16384 slots")
		})
	}
	cur := start(bin)
	ready("host1 serving the VIP")

	const nGo, nPHP = 8, 2
	var wg sync.WaitGroup
	clients, stopLoad := startLoadClients(t, ctx, lab, &wg, nGo)
	defer stopLoad()
	phpOut := startPHPClients(t, ctx, lab, &wg, nPHP, "restart", 20)
	time.Sleep(2 * time.Second)

	// handoff restarts cur into b as the rc script's restart does.
	handoff := func(b string) *Proc {
		t.Helper()
		old := cur
		old.Signal(syscall.SIGUSR2)
		waitUntil(t, 5*time.Second, "SIGUSR2 noted", func() bool { return strings.Contains(old.Output(), "expecting a successor") })
		old.Signal(syscall.SIGTERM)
		time.Sleep(100 * time.Millisecond) // the old one still serves meanwhile
		nw := start(b)
		if !old.Wait(20 * time.Second) {
			t.Fatalf("the old proxy did not exit after the hand-over")
		}
		if !strings.Contains(nw.Output(), "hand-over from the running process complete") {
			t.Errorf("the new proxy did not complete the hand-over:\n%s", nw.Output())
		}
		return nw
	}
	type phase struct {
		name     string
		from, to time.Time
		handoff  bool // issue 24's targets apply
	}
	var phases []phase
	succPid := 0 // the SIGHUP's successor (not a child of the test)
	mark := func(name string, handoff bool, f func()) {
		from := time.Now()
		f()
		time.Sleep(1500 * time.Millisecond)
		phases = append(phases, phase{name, from, time.Now(), handoff})
	}
	mark("(a) in-place restart", true, func() { cur = handoff(bin) })
	mark("(b) upgrade to another build", true, func() { cur = handoff(newer) })
	mark("(d) SIGHUP changing event-loops", true, func() {
		old := cur
		if err := os.WriteFile(conf, []byte(body+"event-loops 3\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		old.Signal(syscall.SIGHUP)
		var succ int
		waitUntil(t, 10*time.Second, "successor started", func() bool {
			if m := regexp.MustCompile(`successor_pid=(\d+)`).FindStringSubmatch(old.Output()); m != nil {
				succ, _ = strconv.Atoi(m[1])
			}
			return succ > 0
		})
		// Its successor writes to the same output pipe, so old.Wait would wait for it too.
		waitUntil(t, 20*time.Second, "the old proxy exited after the SIGHUP hand-over", func() bool {
			return syscall.Kill(old.cmd.Process.Pid, 0) != nil
		})
		// The successor is not a child of the test: (e) stops it by its pid.
		cur, succPid = nil, succ
		t.Cleanup(func() { syscall.Kill(succ, syscall.SIGKILL) })
		waitUntil(t, 5*time.Second, "successor serving", func() bool { return metric(t, lab, 0, "redis_carp_proxy_active", "") == 1 })
	})
	mark("(e) restart before issue 24: SIGTERM, then start", false, func() {
		if err := os.WriteFile(conf, []byte(strings.Replace(body, "handoff-socket ", "handoff-socket none\n# ", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		syscall.Kill(succPid, syscall.SIGTERM)
		waitUntil(t, 10*time.Second, "successor gone", func() bool { return syscall.Kill(succPid, 0) != nil })
		cur = start(bin)
		ready("host1 serving again")
	})
	stopLoad()
	wg.Wait()

	for _, ph := range phases {
		sum := sumStats(t, ph.name, clients, ph.from, ph.to)
		phpFailed, phpReconnects, phpGap := phpPhase(t, phpOut, ph.from, ph.to)
		t.Logf("%s: go-redis (%d clients) %d answers, %d failed commands, %d reconnects, longest gap %v; phpredis (%d clients) %d failed, %d reconnects, longest gap over 20 ms %v",
			ph.name, nGo, sum.answers, sum.failed, sum.reconnects, sum.gap.Round(time.Microsecond), nPHP, phpFailed, phpReconnects, phpGap.Round(time.Microsecond))
		if !ph.handoff {
			continue
		}
		if sum.failed+phpFailed != 0 || sum.reconnects+phpReconnects != 0 {
			t.Errorf("%s: %d failed commands, %d reconnects; want 0 and 0", ph.name, sum.failed+phpFailed, sum.reconnects+phpReconnects)
		}
		if g := max(sum.gap, phpGap); g > 50*time.Millisecond {
			t.Logf("%s: longest gap %v over issue 24's 50 ms", ph.name, g)
			if g > restartGapBound {
				t.Errorf("%s: longest gap %v > %v", ph.name, g, restartGapBound)
			}
		}
	}
	t.Logf("test body took %v", time.Since(testStart).Round(time.Millisecond))
}

// startPHPClients starts n phpredis clients (testdata/handover_client.php) in the client
// namespace for seconds, if php with the redis extension is installed; their outputs are
// filled in when wg is done.
func startPHPClients(t *testing.T, ctx context.Context, lab *Lab, wg *sync.WaitGroup, n int, prefix string, seconds int) []string {
	php, err := exec.LookPath("php")
	if err == nil {
		if out, xerr := exec.Command(php, "-r", `exit(extension_loaded("redis") ? 0 : 1);`).CombinedOutput(); xerr != nil {
			err = fmt.Errorf("php has no redis extension: %v %s", xerr, out)
		}
	}
	out := make([]string, n)
	if err != nil {
		t.Logf("phpredis clients skipped: %v", err)
		return out
	}
	script, _ := filepath.Abs("testdata/handover_client.php")
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, err := lab.Exec(ctx, "client", php, script, vip.String(), "6379", fmt.Sprintf("%s%d", prefix, i), strconv.Itoa(seconds))
			if err != nil {
				t.Errorf("php client %d: %v", i, err)
			}
			out[i] = o
		}()
	}
	return out
}

// phpPhase sums the phpredis clients' failures, reconnects and longest gap in [from, to).
func phpPhase(t *testing.T, outs []string, from, to time.Time) (failed, reconnects int, gap time.Duration) {
	for i, o := range outs {
		if o == "" {
			continue
		}
		var r phpResult
		if err := json.Unmarshal([]byte(strings.TrimSpace(o)), &r); err != nil {
			t.Errorf("php client %d output %q: %v", i, o, err)
			continue
		}
		f, rc, g := r.phase(from, to)
		failed, reconnects, gap = failed+f, reconnects+rc, max(gap, g)
		if f > 0 {
			t.Logf("  phpredis client %d errors %q", i, r.Errors)
		}
	}
	return
}

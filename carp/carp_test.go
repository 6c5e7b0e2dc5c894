package carp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun/cmdruntest"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// scripted is a source whose state the test sets; watch kicks on demand.
type scripted struct {
	mu      sync.Mutex
	state   State
	err     error
	reads   int
	kicks   chan struct{}
	watchFn func(ctx context.Context, kick chan<- struct{}) error
}

func (s *scripted) set(st State, err error) {
	s.mu.Lock()
	s.state, s.err = st, err
	s.mu.Unlock()
}

func (s *scripted) read(context.Context) (State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	return s.state, s.err
}

func (s *scripted) watch(ctx context.Context, kick chan<- struct{}) error {
	if s.watchFn != nil {
		return s.watchFn(ctx, kick)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kicks:
			kickNow(kick)
		}
	}
}

func recv(t *testing.T, ch <-chan Change, within time.Duration) Change {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(within):
		t.Fatalf("no state change within %v", within)
	}
	return Change{}
}

func noChange(t *testing.T, ch <-chan Change, d time.Duration) {
	t.Helper()
	select {
	case c := <-ch:
		t.Fatalf("unexpected change to %v", c.State)
	case <-time.After(d):
	}
}

func runPoller(t *testing.T, src source, poll time.Duration) <-chan Change {
	p := &poller{src: src, cfg: Config{PollInterval: poll, Log: quietLog(), Metrics: NewMetrics(nil)}, label: "test"}
	ch := make(chan Change)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, ch) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return ch
}

func TestPollerEventsAndDedup(t *testing.T) {
	src := &scripted{state: Backup, kicks: make(chan struct{})}
	ch := runPoller(t, src, time.Hour) // events only: no poll in this test
	if c := recv(t, ch, time.Second); c.State != Backup || c.At.IsZero() {
		t.Fatalf("initial %+v", c)
	}
	src.set(Master, nil)
	start := time.Now()
	src.kicks <- struct{}{}
	if c := recv(t, ch, time.Second); c.State != Master {
		t.Fatalf("after event: %v", c.State)
	}
	t.Logf("event → change in %v", time.Since(start))
	// Same state again: no change reported.
	src.kicks <- struct{}{}
	noChange(t, ch, 50*time.Millisecond)
	// A read error counts as INIT: never serve on a state we cannot read.
	src.set(Master, errors.New("boom"))
	src.kicks <- struct{}{}
	if c := recv(t, ch, time.Second); c.State != Init {
		t.Fatalf("after read error: %v", c.State)
	}
	src.set(Master, nil)
	src.kicks <- struct{}{}
	if c := recv(t, ch, time.Second); c.State != Master {
		t.Fatalf("after recovery: %v", c.State)
	}
}

func TestPollerSafetyNet(t *testing.T) {
	// No events at all (devd gone): polling alone finds the change.
	src := &scripted{state: Backup, watchFn: func(ctx context.Context, _ chan<- struct{}) error {
		<-ctx.Done()
		return nil
	}}
	ch := runPoller(t, src, 20*time.Millisecond)
	recv(t, ch, time.Second)
	src.set(Master, nil)
	if c := recv(t, ch, time.Second); c.State != Master {
		t.Fatalf("poll: %v", c.State)
	}
}

func TestStaticWatcher(t *testing.T) {
	w, err := New(Config{Mode: "static", Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan Change, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx, ch) }()
	if c := recv(t, ch, time.Second); c.State != Master {
		t.Fatalf("static: %v", c.State)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestWatcherLabel: the label names the VIP in the metrics (one watcher per VIP in an
// active-active set, all on one registry).
func TestWatcherLabel(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	for _, label := range []string{"198.51.100.101", "198.51.100.102"} {
		w, err := New(Config{Mode: "static", Label: label, Log: quietLog(), Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan Change, 1)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- w.Run(ctx, ch) }()
		recv(t, ch, time.Second)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "redis_carp_proxy_carp_state" {
			for _, mt := range mf.GetMetric() {
				got[mt.GetLabel()[0].GetValue()] = mt.GetGauge().GetValue()
			}
		}
	}
	if len(got) != 2 || got["198.51.100.101"] != float64(Master) || got["198.51.100.102"] != float64(Master) {
		t.Errorf("carp_state by vip = %v, want both VIPs at 2", got)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{Mode: "vip"}); !errors.Is(err, ErrNoVIP) {
		t.Errorf("vip without address: %v", err)
	}
	if _, err := New(Config{Mode: "freebsd", VHID: 0}); !errors.Is(err, ErrNoVIP) {
		t.Errorf("freebsd without vip or vhid: %v", err)
	}
	if _, err := New(Config{Mode: "freebsd", VHID: 10}); !errors.Is(err, ErrNoVIP) {
		t.Errorf("freebsd with a vhid but neither vip nor interface: %v", err)
	}
	if _, err := New(Config{Mode: "carp"}); err == nil {
		t.Error("unknown mode accepted")
	}
	if _, err := New(Config{Mode: "vip", VIP: "not-an-ip"}); err == nil {
		t.Error("bad vip accepted")
	}
}

// listenDevd is a stand-in devd: a real SOCK_SEQPACKET socket (Linux has them too).
func listenDevd(t *testing.T) (string, *net.UnixListener) {
	path := filepath.Join(t.TempDir(), "devd.seqpacket.pipe")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Skipf("no SOCK_SEQPACKET here: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return path, ln
}

func TestFreeBSDSourceDevdAndFallbacks(t *testing.T) {
	path, ln := listenDevd(t)
	fr := cmdruntest.New(map[string]cmdruntest.Reply{
		"/sbin/ifconfig -a": {Stdout: readTestdata(t, "ifconfig-a-14.txt")},
	})
	var kernelState State = Backup
	var reads int
	var mu sync.Mutex
	unavailable := func(string, int) (State, error) { return Init, fmt.Errorf("%w: ENOTTY", errUnavailable) }
	src := &freebsdSource{vip: netip.MustParseAddr("198.51.100.100"), run: fr, pipe: path,
		readNetlink: func(ifname string, vhid int) (State, error) {
			mu.Lock()
			defer mu.Unlock()
			if ifname != "em1" || vhid != 10 {
				return Init, fmt.Errorf("asked for %s vhid %d", ifname, vhid)
			}
			reads++
			return kernelState, nil
		},
		readIoctl: unavailable}
	ch := runPoller(t, src, time.Hour)
	if c := recv(t, ch, 2*time.Second); c.State != Backup {
		t.Fatalf("initial %v", c.State)
	}
	conn, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	// The watcher re-reads the state once connected (events may have been missed before):
	// let that read happen before the kernel state changes.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		mu.Lock()
		n := reads
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no re-read after the devd connection (%d reads)", n)
		}
	}
	mu.Lock()
	kernelState = Master
	mu.Unlock()
	// Other devd records and other vhids do not trigger a read; ours does.
	conn.Write([]byte("!system=IFNET subsystem=em1 type=LINK_UP\n"))
	conn.Write([]byte("!system=CARP subsystem=20@em1 type=MASTER\n"))
	noChange(t, ch, 100*time.Millisecond)
	start := time.Now()
	conn.Write([]byte("!system=CARP subsystem=10@em1 type=MASTER\n"))
	if c := recv(t, ch, time.Second); c.State != Master {
		t.Fatalf("after devd event: %v", c.State)
	}
	t.Logf("devd event → MASTER in %v", time.Since(start))

	// devd restarts: the state changed while it was gone; after reconnecting the watcher
	// re-reads it without any event.
	conn.Close()
	mu.Lock()
	kernelState = Backup
	mu.Unlock()
	conn2, err := ln.AcceptUnix() // the reconnect (after watchRetry)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	if c := recv(t, ch, 2*watchRetry); c.State != Backup {
		t.Fatalf("after reconnect: %v", c.State)
	}
	// The vhid was found once from the VIP with ifconfig -a, and nothing else ran.
	if got, want := fr.Log(), "$ /sbin/ifconfig -a\n"; got != want {
		t.Fatalf("commands:\n%s\nwant:\n%s", got, want)
	}
}

func TestFreeBSDSourceFallbackToIfconfig(t *testing.T) {
	fr := cmdruntest.New(map[string]cmdruntest.Reply{"/sbin/ifconfig em0": {Stdout: readTestdata(t, "ifconfig-14.txt")}})
	unavailable := func(string, int) (State, error) { return Init, fmt.Errorf("%w: EAFNOSUPPORT", errUnavailable) }
	src := &freebsdSource{vip: netip.MustParseAddr("2001:db8::100"), run: fr, ifname: "em0",
		readNetlink: unavailable, readIoctl: unavailable}
	for i := 0; i < 2; i++ {
		st, err := src.read(context.Background())
		if err != nil || st != Master {
			t.Fatalf("read %d: %v %v", i, st, err)
		}
	}
	if src.noNetlinkUntil.IsZero() || src.noIoctlUntil.IsZero() {
		t.Fatal("unavailable methods not remembered")
	}
	want := `$ /sbin/ifconfig em0
$ /sbin/ifconfig em0
$ /sbin/ifconfig em0
`
	if got := fr.Log(); got != want {
		t.Fatalf("commands:\n%s\nwant:\n%s", got, want)
	}

	// A real kernel error (not "unavailable") is reported, as INIT, without falling back.
	src = &freebsdSource{ifname: "em0", vhid: 10, run: fr,
		readNetlink: func(string, int) (State, error) { return Init, ErrNoVHID },
		readIoctl:   unavailable}
	if st, err := src.read(context.Background()); st != Init || !errors.Is(err, ErrNoVHID) ||
		!strings.Contains(err.Error(), "read em0 vhid 10") {
		t.Fatalf("kernel error: %v %v", st, err)
	}
	// FreeBSD 13 output, vhid found from the VIP on the configured interface.
	src = &freebsdSource{vip: netip.MustParseAddr("198.51.100.100"), ifname: "em0", run: fr,
		readNetlink: unavailable, readIoctl: unavailable}
	fr.Replies["/sbin/ifconfig em0"] = cmdruntest.Reply{Stdout: readTestdata(t, "ifconfig-13.txt")}
	if st, err := src.read(context.Background()); err != nil || st != Master || src.vhid != 10 {
		t.Fatalf("13: %v %v vhid %d", st, err, src.vhid)
	}
	// Configured vhid that disagrees with the VIP's: an error, not a guess.
	fr.Replies["/sbin/ifconfig -a"] = cmdruntest.Reply{Stdout: readTestdata(t, "ifconfig-13.txt")}
	src2 := &freebsdSource{vip: netip.MustParseAddr("198.51.100.100"), run: fr, vhid: 20,
		readNetlink: unavailable, readIoctl: unavailable}
	if _, err := src2.read(context.Background()); err == nil || !strings.Contains(err.Error(), "configured carp-vhid is 20") {
		t.Fatalf("vhid mismatch: %v", err)
	}
}

func TestWatchDevdEnds(t *testing.T) {
	path, ln := listenDevd(t)
	kick := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- watchDevd(context.Background(), path, func(devdEvent) bool { return true }, kick) }()
	conn, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	<-kick // the kick right after connecting
	conn.Write([]byte("!system=CARP subsystem=1@em0 type=BACKUP\n"))
	select {
	case <-kick:
	case <-time.After(time.Second):
		t.Fatal("no kick for a CARP event")
	}
	conn.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("watchDevd returned nil after devd closed")
		}
	case <-time.After(time.Second):
		t.Fatal("watchDevd did not return after devd closed")
	}
	// devd not running: a connect error.
	os.Remove(path)
	if err := watchDevd(context.Background(), path, nil, kick); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("no devd: %v", err)
	}
}

func TestSysctlDemoter(t *testing.T) {
	fr := &fakeKernel{}
	state := filepath.Join(t.TempDir(), "demotion")
	d := &sysctlDemoter{run: fr, delta: DemotionDelta, state: state}
	ctx := context.Background()
	d.Restore(ctx) // nothing applied: nothing to undo
	d.Demote(ctx)
	d.Demote(ctx) // already applied: the delta is added once
	d.Restore(ctx)
	d.Restore(ctx)
	want := `$ /sbin/sysctl net.inet.carp.demotion=240
$ /sbin/sysctl -i -n net.inet.carp.demotion
$ /sbin/sysctl net.inet.carp.demotion=-240
`
	if got := fr.Log(); got != want {
		t.Fatalf("commands:\n%s\nwant:\n%s", got, want)
	}
	// A failed sysctl leaves the demoter undemoted, so the delta is never removed twice.
	fr = &fakeKernel{fail: map[string]bool{"/sbin/sysctl net.inet.carp.demotion=240": true}}
	d = &sysctlDemoter{run: fr, delta: DemotionDelta, state: filepath.Join(t.TempDir(), "demotion")}
	if err := d.Demote(ctx); err == nil || !strings.Contains(err.Error(), "Operation not permitted") {
		t.Fatalf("failed demote: %v", err)
	}
	d.Restore(ctx)
	if got, want := fr.Log(), "$ /sbin/sysctl net.inet.carp.demotion=240\n"; got != want {
		t.Fatalf("commands:\n%s\nwant:\n%s", got, want)
	}
}

// Restore trusts the kernel over the state file: after `kldunload carp; kldload carp` the
// counter is 0 while the file still records 240, and something else (the kernel's own
// interface-down demotion, another instance) may have removed part of it. Restore removes
// min(recorded, current), never driving the counter below zero.
func TestRestoreSubtractsAtMostTheKernelCounter(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		kernel   int  // counter when Restore runs
		unloaded bool // carp.ko not loaded: the oid does not exist
		want     int  // counter after Restore
		log      string
	}{
		{name: "reloaded", kernel: 0, want: 0, log: "$ /sbin/sysctl -i -n net.inet.carp.demotion\n"},
		{name: "partly", kernel: 100, want: 0, log: "$ /sbin/sysctl -i -n net.inet.carp.demotion\n$ /sbin/sysctl net.inet.carp.demotion=-100\n"},
		{name: "more", kernel: 480, want: 240, log: "$ /sbin/sysctl -i -n net.inet.carp.demotion\n$ /sbin/sysctl net.inet.carp.demotion=-240\n"},
		{name: "unloaded", unloaded: true, want: 0, log: "$ /sbin/sysctl -i -n net.inet.carp.demotion\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "demotion")
			os.WriteFile(state, []byte("240\n"), 0o644) // left by the previous process
			k := &fakeKernel{demotion: tc.kernel, unloaded: tc.unloaded}
			d := &sysctlDemoter{run: k, delta: DemotionDelta, state: state}
			if err := d.Restore(ctx); err != nil {
				t.Fatal(err)
			}
			if got := k.value(); got != tc.want {
				t.Errorf("counter %d after restore, want %d", got, tc.want)
			}
			if got := k.Log(); got != tc.log {
				t.Errorf("commands:\n%s\nwant:\n%s", got, tc.log)
			}
			if b, _ := os.ReadFile(state); string(b) != "0\n" {
				t.Errorf("state after restore: %q", b)
			}
		})
	}
	// A counter that cannot be read is an error; the record stays for the next try.
	state := filepath.Join(t.TempDir(), "demotion")
	os.WriteFile(state, []byte("240\n"), 0o644)
	k := &fakeKernel{demotion: 240, fail: map[string]bool{"/sbin/sysctl -i -n net.inet.carp.demotion": true}}
	if err := (&sysctlDemoter{run: k, delta: DemotionDelta, state: state}).Restore(ctx); err == nil {
		t.Fatal("restore with an unreadable counter succeeded")
	}
	if b, _ := os.ReadFile(state); string(b) != "240\n" || k.value() != 240 {
		t.Fatalf("after a failed read: state %q, counter %d", b, k.value())
	}
}

// net.inet.carp.demotion outlives the process: a proxy killed while demoting (SIGKILL,
// panic; daemon(8) restarts it) must undo the old delta when it starts again, and never
// add a second one on top.
func TestDemotionSurvivesACrash(t *testing.T) {
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "demotion")
	fr := &fakeKernel{}
	crashed := &sysctlDemoter{run: fr, delta: DemotionDelta, state: state}
	if err := crashed.Demote(ctx); err != nil {
		t.Fatal(err)
	}
	// The process dies here without Restore. Its successor starts as HealthMonitor.Run
	// does: Restore first.
	next := &sysctlDemoter{run: fr, delta: DemotionDelta, state: state}
	if err := next.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	next.Demote(ctx)
	next.Demote(ctx)
	next.Restore(ctx)
	want := `$ /sbin/sysctl net.inet.carp.demotion=240
$ /sbin/sysctl -i -n net.inet.carp.demotion
$ /sbin/sysctl net.inet.carp.demotion=-240
$ /sbin/sysctl net.inet.carp.demotion=240
$ /sbin/sysctl -i -n net.inet.carp.demotion
$ /sbin/sysctl net.inet.carp.demotion=-240
`
	if got := fr.Log(); got != want {
		t.Fatalf("commands:\n%s\nwant:\n%s", got, want)
	}
	if b, _ := os.ReadFile(state); string(b) != "0\n" {
		t.Fatalf("state after restore: %q", b)
	}
	// The record is written before the sysctl: a failed sysctl puts it back.
	fr = &fakeKernel{fail: map[string]bool{"/sbin/sysctl net.inet.carp.demotion=240": true}}
	d := &sysctlDemoter{run: fr, delta: DemotionDelta, state: state}
	if err := d.Demote(ctx); err == nil {
		t.Fatal("demote with a failing sysctl succeeded")
	}
	if b, _ := os.ReadFile(state); string(b) != "0\n" {
		t.Fatalf("state after a failed demote: %q", b)
	}
	// A state file that is not a demotion is an error, never a guess.
	os.WriteFile(state, []byte("garbage\n"), 0o644)
	if err := d.Restore(ctx); err == nil {
		t.Fatal("restore from a garbled state file succeeded")
	}
}

func TestHealthMonitor(t *testing.T) {
	fr := &fakeKernel{}
	var healthy sync.Mutex
	ok := true
	setOK := func(v bool) { healthy.Lock(); ok = v; healthy.Unlock() }
	check := func(context.Context) error {
		healthy.Lock()
		defer healthy.Unlock()
		if !ok {
			return errors.New("no seed reachable")
		}
		return nil
	}
	m := NewMetrics(nil)
	h := &HealthMonitor{Check: check, After: 100 * time.Millisecond, Interval: 10 * time.Millisecond,
		Demoter: &sysctlDemoter{run: fr, delta: DemotionDelta, state: filepath.Join(t.TempDir(), "demotion")}, Log: quietLog(), Metrics: m}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.Run(ctx) }()
	waitCalls := func(n int) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			if got := strings.Count(fr.Log(), "demotion="); got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("want %d commands, have:\n%s", n, fr.Log())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Short unhealthiness (shorter than After) does not demote.
	setOK(false)
	time.Sleep(30 * time.Millisecond)
	setOK(true)
	time.Sleep(150 * time.Millisecond)
	if got := fr.Log(); got != "" {
		t.Fatalf("demoted on a short blip:\n%s", got)
	}
	setOK(false)
	waitCalls(1)
	setOK(true)
	waitCalls(2)
	setOK(false)
	waitCalls(3)
	cancel() // shutdown while demoted: the delta is removed
	<-done
	want := `$ /sbin/sysctl net.inet.carp.demotion=240
$ /sbin/sysctl -i -n net.inet.carp.demotion
$ /sbin/sysctl net.inet.carp.demotion=-240
$ /sbin/sysctl net.inet.carp.demotion=240
$ /sbin/sysctl -i -n net.inet.carp.demotion
$ /sbin/sysctl net.inet.carp.demotion=-240
`
	if got := fr.Log(); got != want {
		t.Fatalf("commands:\n%s\nwant:\n%s", got, want)
	}
}

func TestFileDemoter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "health")
	d, err := NewDemoter("vip", path)
	if err != nil {
		t.Fatal(err)
	}
	read := func() string { b, _ := os.ReadFile(path); return string(b) }
	d.Restore(context.Background())
	if read() != "0\n" {
		t.Fatalf("healthy file %q", read())
	}
	d.Demote(context.Background())
	if read() != "240\n" {
		t.Fatalf("demoted file %q", read())
	}
	if _, err := NewDemoter("vip", ""); err == nil {
		t.Fatal("vip demotion without a health file accepted")
	}
	if _, err := NewDemoter("static", ""); err == nil {
		t.Fatal("static demotion accepted")
	}
	// freebsd mode records its demotion in carp-health-file, by default under /var/run.
	for file, want := range map[string]string{"": DefaultDemotionStateFile, path: path} {
		fd, err := NewDemoter("freebsd", file)
		if sd, ok := fd.(*sysctlDemoter); err != nil || !ok || sd.state != want {
			t.Fatalf("freebsd demoter for %q: %+v, %v", file, fd, err)
		}
	}
	// A path under a regular file cannot be written.
	if err := (&fileDemoter{path: filepath.Join(path, "health")}).Demote(context.Background()); err == nil {
		t.Fatal("unwritable health file: no error")
	}
}

// Each instance (rc profile, configuration file) records its share of the per-vnet
// demotion counter in a state file of its own.
func TestInstanceStateFile(t *testing.T) {
	for conf, want := range map[string]string{
		"":                                          "/var/run/redis-carp-proxy.demotion",
		"/usr/local/etc/redis-carp-proxy.conf":      "/var/run/redis-carp-proxy.demotion",
		"/usr/local/etc/redis-carp-proxy-a.conf":    "/var/run/redis-carp-proxy-a.demotion",
		"/usr/local/etc/redis-carp-proxy-b.conf":    "/var/run/redis-carp-proxy-b.demotion",
		"/etc/cache.conf":                           "/var/run/redis-carp-proxy-cache.demotion",
		"/usr/local/etc/redis-carp-proxy-a.conf.v2": "/var/run/redis-carp-proxy-a.conf.v2.demotion",
	} {
		if got := InstanceStateFile(conf); got != want {
			t.Errorf("InstanceStateFile(%q) = %q, want %q", conf, got, want)
		}
	}
}

// Two profiles on one host: net.inet.carp.demotion is one counter per vnet. Profile b
// starting (its HealthMonitor restores first) must not undo a's demotion, and a's later
// restore must not drive the counter below zero.
func TestProfilesKeepTheirOwnDemotion(t *testing.T) {
	old := runDir
	runDir = t.TempDir()
	t.Cleanup(func() { runDir = old })
	k := &fakeKernel{}
	ctx := context.Background()
	a := &sysctlDemoter{run: k, delta: DemotionDelta, state: InstanceStateFile("/usr/local/etc/redis-carp-proxy-a.conf")}
	b := &sysctlDemoter{run: k, delta: DemotionDelta, state: InstanceStateFile("/usr/local/etc/redis-carp-proxy-b.conf")}
	if err := a.Demote(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(ctx); err != nil { // b starts
		t.Fatal(err)
	}
	if got := k.value(); got != DemotionDelta {
		t.Fatalf("after b's start the counter is %d, want a's %d", got, DemotionDelta)
	}
	a.Restore(ctx)
	b.Restore(ctx)
	if got := k.value(); got != 0 {
		t.Fatalf("after both restored the counter is %d, want 0", got)
	}
}

// A second instance that would record in the same state file is refused while the first
// runs, and accepted once it has stopped.
func TestLockStateRefusesASecondInstance(t *testing.T) {
	state := filepath.Join(t.TempDir(), "redis-carp-proxy.demotion")
	first, err := LockState(state)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockState(state); !errors.Is(err, ErrStateInUse) || !strings.Contains(err.Error(), state) {
		t.Fatalf("second instance on %s: %v", state, err)
	}
	if other, err := LockState(state + "-b"); err != nil {
		t.Fatalf("another state file: %v", err)
	} else {
		other.Close()
	}
	first.Close()
	again, err := LockState(state)
	if err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
	again.Close()
	if _, err := LockState(filepath.Join(state, "x")); err == nil || errors.Is(err, ErrStateInUse) {
		t.Fatalf("lock under a regular file: %v", err)
	}
}

// fakeKernel stands for /sbin/sysctl on net.inet.carp.demotion: writing N adds N to one
// counter (ip_carp.c carp_demote_adj_sysctl → carp_demote_adj), reading prints it as
// `sysctl -n` does ("240\n"). It logs every command like cmdruntest.Recorder, and
// fails the writes listed in fail.
type fakeKernel struct {
	mu       sync.Mutex
	demotion int
	unloaded bool // carp.ko not loaded: `sysctl -i -n` prints nothing
	fail     map[string]bool
	log      strings.Builder
}

func (k *fakeKernel) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	argv := strings.Join(append([]string{name}, args...), " ")
	k.log.WriteString("$ " + argv + "\n")
	if k.fail[argv] {
		return nil, &cmdrun.Error{Argv: append([]string{name}, args...), ExitCode: 1, Stderr: "sysctl: net.inet.carp.demotion: Operation not permitted\n", Err: errors.New("exit status 1")}
	}
	if name != "/sbin/sysctl" {
		return nil, fmt.Errorf("fake kernel: %s", argv)
	}
	last := args[len(args)-1]
	if v, ok := strings.CutPrefix(last, "net.inet.carp.demotion="); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, err
		}
		k.demotion += n
		return nil, nil
	}
	if last == "net.inet.carp.demotion" {
		if k.unloaded {
			return nil, nil
		}
		return []byte(strconv.Itoa(k.demotion) + "\n"), nil
	}
	return nil, fmt.Errorf("fake kernel: %s", argv)
}

func (k *fakeKernel) value() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.demotion
}

func (k *fakeKernel) Log() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.log.String()
}

// A new process of an in-place restart waits for its predecessor's lock on the demotion
// state (WaitLockState) and takes it once the predecessor lets go; it gives up, saying
// why, when its context ends first.
func TestWaitLockStateTakesOverWhenReleased(t *testing.T) {
	state := filepath.Join(t.TempDir(), "redis-carp-proxy.demotion")
	first, err := LockState(state)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := WaitLockState(ctx, state, 10*time.Millisecond); !errors.Is(err, ErrStateInUse) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("while held: %v", err)
	}
	go func() { time.Sleep(50 * time.Millisecond); first.Close() }()
	start := time.Now()
	second, err := WaitLockState(context.Background(), state, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if took := time.Since(start); took < 40*time.Millisecond {
		t.Fatalf("took the lock after %v, before the first let go", took)
	}
}

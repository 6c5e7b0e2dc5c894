package gate

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
)

// echoServer accepts connections and answers each byte with the same byte until
// CloseClients closes them.
type echoServer struct {
	mu       sync.Mutex
	conns    map[net.Conn]bool
	serves   atomic.Int32
	drains   atomic.Int32
	accepted atomic.Int32
}

func (s *echoServer) Serve(ln net.Listener) error {
	s.serves.Add(1)
	defer s.serves.Add(-1)
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil
		}
		s.accepted.Add(1)
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		go io.Copy(c, c)
	}
}

func (s *echoServer) CloseClients(grace time.Duration) {
	s.drains.Add(1)
	time.Sleep(grace)
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
		delete(s.conns, c)
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func canDial(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// waitTimeout bounds every wait for the gate: its transitions take milliseconds.
const waitTimeout = 3 * time.Second

// want is a requested state learned now.
func want(active bool) Want { return Want{Active: active, At: time.Now()} }

func startGate(t *testing.T, drain time.Duration) (*Gate, *echoServer, chan Want, string) {
	srv := &echoServer{conns: map[net.Conn]bool{}}
	addr := freeAddr(t)
	g := &Gate{Addr: addr, VIP: "127.0.0.1", Server: srv, Drain: drain, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: NewMetrics(nil)}
	states := make(chan Want)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Follow(ctx, states) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if canDial(addr) {
			t.Error("listener still open after Run returned")
		}
	})
	return g, srv, states, addr
}

func TestGateListensOnlyWhileActive(t *testing.T) {
	g, srv, states, addr := startGate(t, 500*time.Millisecond) // room for the checks below on a loaded machine
	states <- want(false)
	testutil.WaitFor(t, waitTimeout, "BACKUP applied", func() bool { return !g.Active() })
	if canDial(addr) {
		t.Fatal("listener open while BACKUP")
	}
	start := time.Now()
	states <- want(true)
	testutil.WaitFor(t, waitTimeout, "listener", func() bool { return canDial(addr) })
	t.Logf("MASTER → accepting in %v", time.Since(start))

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	states <- want(false)
	testutil.WaitFor(t, waitTimeout, "inactive", func() bool { return !g.Active() })
	if canDial(addr) {
		t.Fatal("new connections accepted after BACKUP")
	}
	// The existing client is served during the drain period, then closed.
	c.Write([]byte("x"))
	b := make([]byte, 1)
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("client not served during drain: %v", err)
	}
	testutil.WaitFor(t, waitTimeout, "drain", func() bool {
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		_, err := c.Read(b)
		return err == io.EOF
	})
	if srv.drains.Load() != 1 {
		t.Fatalf("drains = %d", srv.drains.Load())
	}
}

func TestGateFlapping(t *testing.T) {
	g, srv, states, addr := startGate(t, 10*time.Millisecond)
	for i := 0; i < 200; i++ {
		active := i%2 == 0
		states <- want(active)
		testutil.WaitFor(t, waitTimeout, "state applied", func() bool { return g.Active() == active })
		if n := srv.serves.Load(); n > 2 {
			// One Serve may still be returning from the previous listener.
			t.Fatalf("step %d: %d Serve loops at once", i, n)
		}
	}
	// Ends on BACKUP (i=199 odd): nothing listens.
	if canDial(addr) {
		t.Fatal("listening after flapping ended in BACKUP")
	}
	states <- want(true)
	states <- want(true) // repeated MASTER: still exactly one listener
	testutil.WaitFor(t, waitTimeout, "listener", func() bool { return canDial(addr) })
	testutil.WaitFor(t, waitTimeout, "one Serve loop", func() bool { return srv.serves.Load() == 1 })
}

func TestGateRetriesListen(t *testing.T) {
	srv := &echoServer{conns: map[net.Conn]bool{}}
	addr := freeAddr(t)
	var fail atomic.Int32
	fail.Store(3)
	g := &Gate{Addr: addr, Server: srv, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Listen: func(ctx context.Context, a string) (net.Listener, error) {
			if fail.Add(-1) >= 0 {
				return nil, &net.OpError{Op: "listen", Err: io.ErrUnexpectedEOF}
			}
			return Listen(ctx, a)
		}}
	states := make(chan Want, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Follow(ctx, states) }()
	defer func() { cancel(); <-done }()
	states <- want(true)
	testutil.WaitFor(t, waitTimeout, "listener after retries", func() bool { return canDial(addr) })
}

// TestListenFreeBind binds an address that is on no interface here, as the gate does
// with the VIP before it is configured. As root on Linux (IP_FREEBIND) and FreeBSD
// (IP_BINDANY) that must work; elsewhere the test says why it cannot check.
func TestListenFreeBind(t *testing.T) {
	const addr = "198.51.100.100"
	must := (runtime.GOOS == "linux" || runtime.GOOS == "freebsd") && os.Geteuid() == 0
	ln, err := Listen(context.Background(), addr+":0")
	if err != nil {
		if !must {
			t.Skipf("free bind not required on %s with euid %d: %v", runtime.GOOS, os.Geteuid(), err)
		}
		t.Fatalf("free bind of %s as root on %s: %v", addr, runtime.GOOS, err)
	}
	defer ln.Close()
	if got := ln.Addr().(*net.TCPAddr).IP.String(); got != addr {
		t.Fatalf("listener bound to %s, want %s", got, addr)
	}
}

// countingListen opens real listeners and tracks how many are open at once.
type countingListen struct {
	open, maxOpen, opened atomic.Int32
}

type trackedListener struct {
	net.Listener
	c    *countingListen
	once sync.Once
}

func (l *trackedListener) Close() error {
	l.once.Do(func() { l.c.open.Add(-1) })
	return l.Listener.Close()
}

func (c *countingListen) listen(ctx context.Context, addr string) (net.Listener, error) {
	ln, err := Listen(ctx, addr)
	if err != nil {
		return nil, err
	}
	c.opened.Add(1)
	if n := c.open.Add(1); n > c.maxOpen.Load() {
		c.maxOpen.Store(n)
	}
	return &trackedListener{Listener: ln, c: c}, nil
}

func TestGateNeverOpensOnBackup(t *testing.T) {
	srv := &echoServer{conns: map[net.Conn]bool{}}
	addr := freeAddr(t)
	cl := &countingListen{}
	g := &Gate{Addr: addr, Server: srv, Drain: 10 * time.Millisecond, Listen: cl.listen,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	wants := make(chan Want)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Follow(ctx, wants) }()

	// A prober dials all the time while the scripted watcher reports BACKUP and INIT
	// (both false) again and again: nothing may ever accept.
	stop := make(chan struct{})
	var connected atomic.Int32
	var probes sync.WaitGroup
	probes.Add(1)
	go func() {
		defer probes.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if canDial(addr) {
				connected.Add(1)
			}
		}
	}()
	for i := 0; i < 500; i++ {
		wants <- Want{Active: false, At: time.Now()}
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	probes.Wait()
	cancel()
	<-done
	if n := connected.Load(); n != 0 {
		t.Fatalf("%d connections accepted while BACKUP", n)
	}
	if n := cl.opened.Load(); n != 0 {
		t.Fatalf("listener opened %d times while BACKUP", n)
	}
	if srv.accepted.Load() != 0 {
		t.Fatal("server accepted a client while BACKUP")
	}
}

func TestGateFlappingOneListener(t *testing.T) {
	srv := &echoServer{conns: map[net.Conn]bool{}}
	addr := freeAddr(t)
	cl := &countingListen{}
	g := &Gate{Addr: addr, Server: srv, Drain: time.Millisecond, Listen: cl.listen,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	wants := make(chan Want)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Follow(ctx, wants) }()
	defer func() {
		cancel()
		<-done
		if cl.open.Load() != 0 {
			t.Error("listener left open after Follow returned")
		}
	}()
	// MASTER→BACKUP→MASTER within microseconds, with repeats, no waiting in between.
	script := []bool{true, false, true, true, false, false, true, false, true}
	for i := 0; i < 100; i++ {
		for _, s := range script {
			wants <- Want{Active: s, At: time.Now()}
		}
	}
	// The script ends on MASTER: the listener must be open (never left closed) ...
	wants <- Want{Active: true, At: time.Now()}
	testutil.WaitFor(t, waitTimeout, "listener open after flapping ended in MASTER", func() bool { return canDial(addr) })
	if !g.Active() {
		t.Fatal("gate inactive after flapping ended in MASTER")
	}
	// ... and there was never more than one at a time.
	if n := cl.maxOpen.Load(); n != 1 {
		t.Fatalf("max listeners open at once = %d, want 1", n)
	}
	if cl.open.Load() != 1 {
		t.Fatalf("%d listeners open, want 1", cl.open.Load())
	}
}

func TestGateActivationLatency(t *testing.T) {
	srv := &echoServer{conns: map[net.Conn]bool{}}
	addr := freeAddr(t)
	reg := prometheus.NewRegistry()
	var logBuf testutil.SyncBuffer
	g := &Gate{Addr: addr, Server: srv, Metrics: NewMetrics(reg), Log: slog.New(slog.NewTextHandler(&logBuf, nil))}
	wants := make(chan Want)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Follow(ctx, wants) }()
	defer func() { cancel(); <-done }()

	// The state was learned 30ms before it reached the gate: that time counts.
	learned := time.Now().Add(-30 * time.Millisecond)
	wants <- Want{Active: true, At: learned}
	testutil.WaitFor(t, waitTimeout, "listener", func() bool { return canDial(addr) })

	// The observation is recorded right after the listener opens: wait for it, then
	// bound it by the time elapsed since the state was learned.
	var h *dto.Histogram
	testutil.WaitFor(t, waitTimeout, "activation observed", func() bool {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "redis_carp_proxy_activation_duration_seconds" {
				h = mf.GetMetric()[0].GetHistogram()
			}
		}
		return h != nil && h.GetSampleCount() >= 1
	})
	elapsed := time.Since(learned)
	if h.GetSampleCount() != 1 {
		t.Fatalf("activation histogram: %v", h)
	}
	if got := h.GetSampleSum(); got < 0.030 || got > elapsed.Seconds() {
		t.Fatalf("activation latency %.4fs, want between 0.030s and %.4fs", got, elapsed.Seconds())
	}
	t.Logf("activation latency %.3fms", h.GetSampleSum()*1000)
	if !strings.Contains(logBuf.String(), "activation=") {
		t.Fatalf("activation latency not logged: %s", logBuf.String())
	}
}

// TestGroupFollowsTogether drives two gates (a VIP's plain and TLS listeners, say) through
// one Group: both open on MASTER and close on BACKUP, the group reports the last state by
// name, and per-VIP metrics move only for the group's VIP.
func TestGroupFollowsTogether(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Init("198.51.100.102") // a VIP this host never serves: visible as inactive
	srv := &echoServer{conns: map[net.Conn]bool{}}
	a1, a2 := freeAddr(t), freeAddr(t)
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	grp := &Group{VIP: "198.51.100.101", Gates: []*Gate{
		{Addr: a1, VIP: "198.51.100.101", Server: srv, Drain: time.Millisecond, Log: discard, Metrics: m},
		{Addr: a2, VIP: "198.51.100.101", Server: srv, Drain: time.Millisecond, Log: discard},
	}}
	if grp.State() != "INIT" || grp.Active() {
		t.Fatalf("before any state: %q, active %v", grp.State(), grp.Active())
	}
	wants := make(chan Want)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- grp.Follow(ctx, wants) }()

	wants <- Want{Active: true, At: time.Now(), State: "MASTER"}
	testutil.WaitFor(t, waitTimeout, "both listeners", func() bool { return canDial(a1) && canDial(a2) })
	if grp.State() != "MASTER" || !grp.Active() {
		t.Fatalf("after MASTER: %q, active %v", grp.State(), grp.Active())
	}
	gauge := func(vip string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "redis_carp_proxy_active" {
				continue
			}
			for _, mt := range mf.GetMetric() {
				for _, lp := range mt.GetLabel() {
					if lp.GetName() == "vip" && lp.GetValue() == vip {
						return mt.GetGauge().GetValue()
					}
				}
			}
		}
		return -1
	}
	if a, b := gauge("198.51.100.101"), gauge("198.51.100.102"); a != 1 || b != 0 {
		t.Fatalf("active{vip=.101} = %v, {vip=.102} = %v; want 1 and 0", a, b)
	}

	wants <- Want{Active: false, At: time.Now(), State: "BACKUP"}
	testutil.WaitFor(t, waitTimeout, "both listeners closed", func() bool { return !grp.Active() })
	if canDial(a1) || canDial(a2) {
		t.Fatal("a listener is open after BACKUP")
	}
	if grp.State() != "BACKUP" || gauge("198.51.100.101") != 0 {
		t.Fatalf("after BACKUP: %q, active gauge %v", grp.State(), gauge("198.51.100.101"))
	}

	// Ending on MASTER: Follow returning closes both.
	wants <- Want{Active: true, At: time.Now(), State: "MASTER"}
	testutil.WaitFor(t, waitTimeout, "both listeners again", func() bool { return canDial(a1) && canDial(a2) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if canDial(a1) || canDial(a2) {
		t.Fatal("a listener is open after Follow returned")
	}
}

package handover

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/carp"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun/cmdruntest"
)

// lab is a fake pair of hosts around the real freebsd-mode handover demoter: the demoter
// runs sysctl through a recording runner; once the recorded state file says the host is
// demoted, this host's state of every VIP goes BACKUP after moveAfter (0: never, a backup
// without preemption) and the peer reports it MASTER and served; the daemon's clients
// drain drainAfter after that.
type lab struct {
	mu         sync.Mutex
	state      string
	rec        *cmdruntest.Recorder
	moveAfter  time.Duration
	drainAfter time.Duration
	demotedAt  time.Time
	own        map[string]carp.State
	peer       PeerStatus
	clients    int
}

func newLab(t *testing.T, own map[string]carp.State) *lab {
	return &lab{state: filepath.Join(t.TempDir(), "redis-carp-proxy.handover"),
		rec: cmdruntest.New(map[string]cmdruntest.Reply{
			"/sbin/sysctl -i -n net.inet.carp.demotion": {Stdout: "240\n"},
		}), own: own, clients: 3, moveAfter: 50 * time.Millisecond, drainAfter: 80 * time.Millisecond,
		peer: PeerStatus{Peer: "198.51.100.2:9479", State: "BACKUP", SlotsComplete: true}}
}

func (l *lab) demoted(t *testing.T) bool {
	n, err := carp.HandoverApplied(l.state)
	if err != nil {
		t.Error(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n == 0 {
		l.demotedAt = time.Time{}
		return false
	}
	if l.demotedAt.IsZero() {
		l.demotedAt = time.Now()
	}
	return true
}

// moved reports whether CARP has moved the VIPs (demoted for moveAfter).
func (l *lab) moved(t *testing.T) bool {
	if !l.demoted(t) || l.moveAfter == 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Since(l.demotedAt) >= l.moveAfter
}

func (l *lab) plan(t *testing.T) *Plan {
	d, err := carp.NewHandoverDemoter("freebsd", l.state, l.rec)
	if err != nil {
		t.Fatal(err)
	}
	var vips []string
	for v := range l.own {
		vips = append(vips, v)
	}
	return &Plan{VIPs: vips, Demoter: d, Timeout: 2 * time.Second, Poll: 5 * time.Millisecond, Drain: time.Second,
		Own: func(ctx context.Context, vip string) (carp.State, error) {
			if l.moved(t) {
				return carp.Backup, nil
			}
			return l.own[vip], nil
		},
		Peers: func(ctx context.Context, vip string) []PeerStatus {
			p := l.peer
			if l.moved(t) && l.own[vip] == carp.Master {
				p.State, p.Active = "MASTER", true
			}
			return []PeerStatus{p}
		},
		Clients: func(ctx context.Context, vip string) (int, error) {
			if !l.moved(t) {
				return l.clients, nil
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if time.Since(l.demotedAt) >= l.moveAfter+l.drainAfter {
				return 0, nil
			}
			return l.clients, nil
		}}
}

func TestHandoverMovesWaitsAndDrains(t *testing.T) {
	l := newLab(t, map[string]carp.State{"198.51.100.100": carp.Master})
	rep, err := l.plan(t).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Moved) != 1 || rep.Moved[0] != "198.51.100.100" || rep.TakenBy["198.51.100.100"] != "198.51.100.2:9479" {
		t.Fatalf("report: %+v", rep)
	}
	if rep.Backup < l.moveAfter || rep.Drained < l.moveAfter+l.drainAfter || rep.DrainUnknown {
		t.Fatalf("returned before the VIP moved (%v) or drained (%v)", rep.Backup, rep.Drained)
	}
	if got, want := l.rec.Log(), "$ /sbin/sysctl net.inet.carp.demotion=240\n"; got != want {
		t.Fatalf("commands:\n%s\nwant:\n%s", got, want)
	}
	// handover --undo removes exactly the recorded delta.
	if err := l.plan(t).Undo(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "$ /sbin/sysctl net.inet.carp.demotion=240\n$ /sbin/sysctl -i -n net.inet.carp.demotion\n$ /sbin/sysctl net.inet.carp.demotion=-240\n"
	if got := l.rec.Log(); got != want {
		t.Fatalf("commands after undo:\n%s\nwant:\n%s", got, want)
	}
	if n, _ := carp.HandoverApplied(l.state); n != 0 {
		t.Fatalf("still recorded after undo: %d", n)
	}
}

func TestHandoverRefusesWithoutReadyPeer(t *testing.T) {
	for name, tc := range map[string]struct {
		peer PeerStatus
		why  string
	}{
		"peer master":     {PeerStatus{Peer: "b:9479", State: "MASTER", Active: true, SlotsComplete: true}, "b:9479: CARP state MASTER, not BACKUP"},
		"peer init":       {PeerStatus{Peer: "b:9479", State: "INIT", SlotsComplete: true}, "CARP state INIT, not BACKUP"},
		"slot map":        {PeerStatus{Peer: "b:9479", State: "BACKUP"}, "b:9479: its slot map does not cover every slot"},
		"peer down":       {PeerStatus{Peer: "b:9479", Err: errors.New("connection refused")}, "b:9479: connection refused"},
		"no peer answers": {PeerStatus{}, "no peer answered"},
	} {
		t.Run(name, func(t *testing.T) {
			l := newLab(t, map[string]carp.State{"198.51.100.100": carp.Master})
			l.peer = tc.peer
			p := l.plan(t)
			if name == "no peer answers" {
				p.Peers = func(context.Context, string) []PeerStatus { return nil }
			}
			_, err := p.Run(context.Background())
			if !errors.Is(err, ErrNoPeer) || !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), "198.51.100.100") {
				t.Fatalf("err = %v, want ErrNoPeer saying %q", err, tc.why)
			}
			if got := l.rec.Log(); got != "" {
				t.Fatalf("refused, but ran:\n%s", got)
			}
		})
	}
	// No peers configured at all.
	l := newLab(t, map[string]carp.State{"198.51.100.100": carp.Master})
	p := l.plan(t)
	p.Peers = nil
	if _, err := p.Run(context.Background()); !errors.Is(err, ErrNoPeer) || !strings.Contains(err.Error(), "handover-peers") {
		t.Fatalf("no peers: %v", err)
	}
	// --force skips the check; without peers the move is this host's BACKUP alone.
	p.Force = true
	rep, err := p.Run(context.Background())
	if err != nil || len(rep.Moved) != 1 {
		t.Fatalf("forced: %+v, %v", rep, err)
	}
}

// A backup that does not preempt never takes the VIP: the handover gives up at its
// timeout, undoes the demotion and says what it waited for.
func TestHandoverTimeoutUndoes(t *testing.T) {
	l := newLab(t, map[string]carp.State{"198.51.100.100": carp.Master})
	l.moveAfter = 0
	p := l.plan(t)
	p.Timeout = 150 * time.Millisecond
	start := time.Now()
	_, err := p.Run(context.Background())
	took := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "198.51.100.100: this host MASTER") ||
		!strings.Contains(err.Error(), "preempt") || !strings.Contains(err.Error(), "demotion is undone") {
		t.Fatalf("err = %v", err)
	}
	if took < p.Timeout || took > p.Timeout+time.Second {
		t.Fatalf("gave up after %v, timeout %v", took, p.Timeout)
	}
	want := "$ /sbin/sysctl net.inet.carp.demotion=240\n$ /sbin/sysctl -i -n net.inet.carp.demotion\n$ /sbin/sysctl net.inet.carp.demotion=-240\n"
	if got := l.rec.Log(); got != want {
		t.Fatalf("commands:\n%s\nwant:\n%s", got, want)
	}
}

// A host that serves nothing is demoted all the same (it must not take a VIP while it is
// in maintenance) and no peer is asked.
func TestHandoverNotServing(t *testing.T) {
	l := newLab(t, map[string]carp.State{"198.51.100.101": carp.Backup, "198.51.100.102": carp.Backup})
	p := l.plan(t)
	p.Peers = func(context.Context, string) []PeerStatus { t.Fatal("peer asked"); return nil }
	rep, err := p.Run(context.Background())
	if err != nil || len(rep.Moved) != 0 || len(rep.Kept) != 2 {
		t.Fatalf("report %+v, err %v", rep, err)
	}
	if got := l.rec.Log(); got != "$ /sbin/sysctl net.inet.carp.demotion=240\n" {
		t.Fatalf("commands:\n%s", got)
	}
}

// Without the daemon's client count the handover waits drain-timeout, bounded by its own
// timeout; a count that fails falls back to the same.
func TestHandoverDrainUnknown(t *testing.T) {
	l := newLab(t, map[string]carp.State{"198.51.100.100": carp.Master})
	p := l.plan(t)
	p.Drain = 120 * time.Millisecond
	p.Clients = func(context.Context, string) (int, error) { return 0, errors.New("admin-listen not set") }
	rep, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.DrainUnknown || rep.Drained < l.moveAfter+p.Drain {
		t.Fatalf("report %+v", rep)
	}
}

func TestParseReadyz(t *testing.T) {
	// Answers of proxy/hoststate.go's Server.ready, as /readyz?vip=ADDR serves them.
	for _, tc := range []struct {
		status int
		body   string
		want   PeerStatus
		err    string
	}{
		{503, "not active (CARP state BACKUP), slot map epoch 7 covers all 16384 slots (3 masters)\n",
			PeerStatus{Peer: "p", State: "BACKUP", SlotsComplete: true}, ""},
		{200, "active (CARP state MASTER), slot map epoch 7 covers all 16384 slots (3 masters)\n",
			PeerStatus{Peer: "p", State: "MASTER", Active: true, SlotsComplete: true}, ""},
		{503, "not active (CARP state BACKUP), slot map incomplete: the cluster serves 10923 of 16384 slots (last complete map: epoch 6)\n",
			PeerStatus{Peer: "p", State: "BACKUP"}, ""},
		{503, "not active (CARP state INIT), no slot map loaded: cluster not reachable yet\n",
			PeerStatus{Peer: "p", State: "INIT"}, ""},
		{404, "unknown vip \"198.51.100.9\"; this proxy serves 198.51.100.100\n", PeerStatus{}, "does not serve this VIP"},
		{500, "oops\n", PeerStatus{}, "unexpected /readyz answer 500"},
	} {
		got := ParseReadyz("p", tc.status, tc.body)
		if tc.err != "" {
			if got.Err == nil || !strings.Contains(got.Err.Error(), tc.err) || got.Ready() {
				t.Errorf("%d %q: %+v, want error %q", tc.status, tc.body, got, tc.err)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("%d %q: %+v, want %+v", tc.status, tc.body, got, tc.want)
		}
	}
}

func TestParseClients(t *testing.T) {
	page := `# HELP redis_carp_proxy_client_connections Client connections currently open, by VIP.
# TYPE redis_carp_proxy_client_connections gauge
redis_carp_proxy_client_connections{vip="198.51.100.101"} 7
redis_carp_proxy_client_connections{vip="198.51.100.102"} 0
redis_carp_proxy_client_connections_accepted_total{vip="198.51.100.101"} 12
`
	if n, err := ParseClients(page, "198.51.100.101"); n != 7 || err != nil {
		t.Fatalf("101: %d %v", n, err)
	}
	if n, err := ParseClients(page, "198.51.100.102"); n != 0 || err != nil {
		t.Fatalf("102: %d %v", n, err)
	}
	if _, err := ParseClients(page, "198.51.100.10"); err == nil {
		t.Fatal("a VIP without a gauge was counted")
	}
}

// HTTPPeers and HTTPClients talk to real admin-style HTTP servers.
func TestHTTPPeersAndClients(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not active (CARP state BACKUP), slot map epoch 1 covers all 16384 slots (3 masters) vip=%s\n", r.URL.Query().Get("vip"))
		case "/metrics":
			fmt.Fprintln(w, `redis_carp_proxy_client_connections{vip="198.51.100.100"} 2`)
		}
	})}
	ln := listenLoopback(t)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c := &http.Client{Timeout: time.Second}
	st := HTTPPeers(c, []string{ln.Addr().String(), "127.0.0.1:1"})(context.Background(), "198.51.100.100")
	if len(st) != 2 || !st[0].Ready() || st[1].Err == nil {
		t.Fatalf("peers: %+v", st)
	}
	if n, err := HTTPClients(c, ln.Addr().String())(context.Background(), "198.51.100.100"); n != 2 || err != nil {
		t.Fatalf("clients: %d %v", n, err)
	}
}

// This host went BACKUP but no peer confirms serving (their admin listeners stopped
// answering): the handover ends at its timeout without undoing the demotion, which would
// take the VIPs back from whoever serves them.
func TestHandoverUnconfirmedIsNotUndone(t *testing.T) {
	l := newLab(t, map[string]carp.State{"198.51.100.100": carp.Master})
	p := l.plan(t)
	p.Timeout = 200 * time.Millisecond
	peers := p.Peers
	p.Peers = func(ctx context.Context, vip string) []PeerStatus {
		if l.moved(t) {
			return []PeerStatus{{Peer: "b:9479", Err: errors.New("i/o timeout")}}
		}
		return peers(ctx, vip)
	}
	rep, err := p.Run(context.Background())
	if err != nil || len(rep.Moved) != 1 || rep.TakenBy["198.51.100.100"] != "" {
		t.Fatalf("report %+v, err %v", rep, err)
	}
	if got := l.rec.Log(); got != "$ /sbin/sysctl net.inet.carp.demotion=240\n" {
		t.Fatalf("commands:\n%s", got)
	}
}

// holdLog records the holds and releases a plan asks for, with the demotion state at the
// time.
type holdLog struct {
	mu  sync.Mutex
	ops []string
}

func (h *holdLog) add(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, s)
}

func (h *holdLog) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.ops, "; ")
}

func (h *holdLog) wire(t *testing.T, p *Plan, l *lab) {
	p.Admin = "198.51.100.1:9479"
	p.Hold = func(ctx context.Context, admin, vip string, d time.Duration) (HoldCounts, error) {
		h.add(fmt.Sprintf("hold %s %s demoted=%v moved=%v", admin, vip, l.demoted(t), l.moved(t)))
		return HoldCounts{Clients: 3, Waiting: 3}, nil
	}
	p.Release = func(ctx context.Context, admin, vip string) error {
		h.add(fmt.Sprintf("release %s %s demoted=%v moved=%v", admin, vip, l.demoted(t), l.moved(t)))
		return nil
	}
}

// A handover holds this host's clients before it demotes the host and releases them once
// a peer serves the VIP (so they reconnect to a listener that is open); a handover that
// times out releases them too.
func TestHandoverHoldsBeforeTheMoveAndReleasesAfter(t *testing.T) {
	l := newLab(t, map[string]carp.State{"198.51.100.100": carp.Master})
	p := l.plan(t)
	var h holdLog
	h.wire(t, p, l)
	rep, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := "hold 198.51.100.1:9479 198.51.100.100 demoted=false moved=false; release 198.51.100.1:9479 198.51.100.100 demoted=true moved=true"
	if h.String() != want {
		t.Fatalf("holds: %s\nwant: %s", h.String(), want)
	}
	if rep.Held["198.51.100.100"] != (HoldCounts{Clients: 3, Waiting: 3}) {
		t.Fatalf("report: %+v", rep.Held)
	}

	l = newLab(t, map[string]carp.State{"198.51.100.100": carp.Master})
	l.moveAfter = 0 // no backup preempts
	p = l.plan(t)
	p.Timeout = 100 * time.Millisecond
	h = holdLog{}
	h.wire(t, p, l)
	if _, err := p.Run(context.Background()); !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	if ops := h.String(); !strings.HasPrefix(ops, "hold ") || !strings.Contains(ops, "; release 198.51.100.1:9479 198.51.100.100") {
		t.Fatalf("a handover that timed out did not release its hold: %s", ops)
	}
}

// handover --undo holds the clients of the peer that serves the VIP, removes the
// demotion, and releases the peer's hold once this host serves the VIP again.
func TestUndoHoldsThePeerUntilThisHostServes(t *testing.T) {
	l := newLab(t, map[string]carp.State{"198.51.100.100": carp.Master})
	if _, err := l.plan(t).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := l.plan(t)
	var h holdLog
	h.wire(t, p, l)
	serving := false
	go func() { time.Sleep(50 * time.Millisecond); l.mu.Lock(); serving = true; l.mu.Unlock() }()
	p.Serving = func(ctx context.Context, vip string) bool { l.mu.Lock(); defer l.mu.Unlock(); return serving }
	start := time.Now()
	if err := p.Undo(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "hold 198.51.100.2:9479 198.51.100.100 demoted=true moved=true; release 198.51.100.2:9479 198.51.100.100 demoted=false moved=false"
	if h.String() != want {
		t.Fatalf("holds: %s\nwant: %s", h.String(), want)
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Fatalf("released after %v, before this host served", took)
	}
}

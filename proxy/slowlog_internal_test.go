package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

func slowArgs(s string) [][]byte {
	var out [][]byte
	for _, f := range strings.Fields(s) {
		out = append(out, []byte(f))
	}
	return out
}

func (sl *slowlog) dump() []string {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	var out []string
	for i := 0; i < sl.n; i++ {
		e := sl.newest(i)
		out = append(out, fmt.Sprintf("%d %q", e.id, e.args))
	}
	return out
}

// TestSlowlogRing: the newest slowlog-max-len entries, newest first, each with its own copy
// of the arguments (buffers are reused as the ring wraps), trimmed and redacted as Redis
// does, and a smaller max-len keeps the newest.
func TestSlowlogRing(t *testing.T) {
	var sl slowlog
	in := slowArgs("SET k v0")
	for i := 0; i < 5; i++ {
		in[2] = []byte(fmt.Sprintf("v%d", i))
		sl.add(3, slowEntry{args: in})
	}
	in[2][0] = 'X' // the caller's buffer changes: the log must not
	got := strings.Join(sl.dump(), "\n")
	want := "4 [\"SET\" \"k\" \"v4\"]\n3 [\"SET\" \"k\" \"v3\"]\n2 [\"SET\" \"k\" \"v2\"]"
	if got != want {
		t.Fatalf("ring:\n%s\nwant:\n%s", got, want)
	}
	sl.add(2, slowEntry{args: slowArgs("AUTH user secret")})
	sl.add(2, slowEntry{args: slowArgs("HELLO 3 AUTH user pass SETNAME x")})
	got = strings.Join(sl.dump(), "\n")
	want = "6 [\"HELLO\" \"3\" \"AUTH\" \"(redacted)\" \"(redacted)\" \"SETNAME\" \"x\"]\n5 [\"AUTH\" \"(redacted)\" \"(redacted)\"]"
	if got != want {
		t.Fatalf("after resize to 2:\n%s\nwant:\n%s", got, want)
	}
	sl.add(2, slowEntry{args: slowArgs("MIGRATE h 1 k 0 5 AUTH2 u p KEYS a")})
	sl.add(2, slowEntry{args: slowArgs("CONFIG SET maxmemory 1 requirepass pw")})
	got = strings.Join(sl.dump(), "\n")
	want = "8 [\"CONFIG\" \"SET\" \"maxmemory\" \"(redacted)\" \"requirepass\" \"(redacted)\"]\n" +
		"7 [\"MIGRATE\" \"h\" \"1\" \"k\" \"0\" \"5\" \"AUTH2\" \"(redacted)\" \"(redacted)\" \"KEYS\" \"a\"]"
	if got != want {
		t.Fatalf("redaction:\n%s\nwant:\n%s", got, want)
	}
	long := append(slowArgs("RPUSH l"), []byte(strings.Repeat("a", 200)))
	for i := 0; i < 40; i++ {
		long = append(long, []byte("x"))
	}
	sl.add(2, slowEntry{args: long})
	sl.mu.Lock()
	e := sl.newest(0)
	n, third, last := len(e.args), string(e.args[2]), string(e.args[len(e.args)-1])
	sl.mu.Unlock()
	if n != slowlogMaxArgs || third != strings.Repeat("a", 128)+"... (72 more bytes)" || last != "... (12 more arguments)" {
		t.Fatalf("trimmed entry: %d args, third %q, last %q", n, third, last)
	}
	sl.reset()
	if d := sl.dump(); len(d) != 0 {
		t.Fatalf("after reset: %v", d)
	}
}

// TestSlowlogCappedPerTick: under overload every command is slow; a loop records at most
// max(slowlog-max-len, slowlogTickMin) entries per tick, and counts again after the tick.
func TestSlowlogCappedPerTick(t *testing.T) {
	cfg := config.Default()
	cfg.ClusterSeeds = []string{"127.0.0.1:1"}
	cfg.SlowlogSlowerThan, cfg.SlowlogMaxLen, cfg.EventLoops = 0, 4, 1
	s := NewServer(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	defer s.Close()
	l := s.loops[0]
	c := s.newLoopClient(l, -1, netip.AddrPort{}, netip.AddrPort{})
	burst := func(n int) {
		if !l.call(func() {
			for i := 0; i < n; i++ {
				r := &lreq{c: c, label: "set", raw: resp.AppendCommand(nil, []byte("SET"), []byte("k"), []byte("v")), start: l.nowNano - 1, slowEntry: true}
				c.account(r, replyOK)
			}
		}, 5*time.Second) {
			t.Fatal("loop did not run the burst")
		}
	}
	burst(3 * slowlogTickMin)
	if got := s.slow.nextID; got != slowlogTickMin {
		t.Fatalf("entries recorded in one tick: %d, want %d", got, slowlogTickMin)
	}
	l.call(func() { l.slowLogged = 0 }, 5*time.Second) // what the tick does
	burst(1)
	if got := s.slow.nextID; got != slowlogTickMin+1 {
		t.Fatalf("entries after the tick: %d, want %d", got, slowlogTickMin+1)
	}
}

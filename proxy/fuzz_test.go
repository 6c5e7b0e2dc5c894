package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/redcon"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

var (
	fuzzOnce   sync.Once
	fuzzServer *Server
)

// fuzzSession returns a session of a proxy that has no slot map and no network: routed
// commands end with ErrNoSlotMap at once, so the whole read side (guard, redcon reader,
// authentication, deny-list, MULTI queueing, local commands, command table, key positions,
// hash slots, multi-key splitting) runs without a cluster.
func fuzzSession() *session {
	fuzzOnce.Do(func() {
		cfg := config.Default()
		cfg.ClusterSeeds = []string{"127.0.0.1:1"}
		cfg.DenyCommands = []string{"keys"}
		fuzzServer = NewServer(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	})
	c1, c2 := net.Pipe()
	c2.Close()
	return newSession(fuzzServer, c1)
}

// FuzzClientRequest feeds arbitrary client bytes through the guard, the redcon reader and
// the request router. Nothing may panic, the guard may pass no more than it read, every
// command it passes stays within the limits, and key positions and slots are in range.
func FuzzClientRequest(f *testing.F) {
	for _, s := range []string{
		"*1\r\n$4\r\nPING\r\n", "PING\r\nSET a b\r\n", "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nb\r\n",
		"*4\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n$6\r\n{a}bcd\r\n", "MULTI\r\nINCR x\r\nEXEC\r\n",
		"*1\r\n$2147483648\r\n", "*-1\r\n", "EVAL \"return 1\" 2 a b\r\n", "XREAD STREAMS a b 0 0\r\n",
		"AUTH x\r\nKEYS *\r\n", "SET a \"unbalanced\r\n", "\x00\xff\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// A hang is a bug too: crash the worker so the fuzzer keeps the input.
		finished := make(chan struct{})
		defer close(finished)
		go func() {
			select {
			case <-finished:
			case <-time.After(5 * time.Second):
				panic(fmt.Sprintf("FuzzClientRequest: input still running after 5s: %q", data))
			}
		}()
		const maxBulk, maxArgs, maxQuery = 4096, 64, 16384
		g := &guard{r: bytes.NewReader(data), scanner: scanner{maxBulk: maxBulk, maxArgs: maxArgs, maxInline: 1024, maxQuery: maxQuery}}
		rd := newFrameReader(g, new(atomic.Int64))
		// The same bytes through redcon's reader (the sessions' reader before frameReader):
		// the commands of one must be a prefix of the other's (they differ only in how many
		// commands before a malformed one they return).
		g2 := &guard{r: bytes.NewReader(data), scanner: scanner{maxBulk: maxBulk, maxArgs: maxArgs, maxInline: 1024, maxQuery: maxQuery}}
		cr := &countReader{r: g2}
		ref := redcon.NewReader(cr)
		var got, want [][][]byte
		for i := 0; i < 1000; i++ {
			cmds, err := ref.ReadCommands()
			if err != nil {
				break
			}
			for _, c := range cmds {
				if !blank(c.Args) { // redcon returns a blank inline line; Redis skips it
					want = append(want, c.Args)
				}
			}
		}
		ss := fuzzSession()
		defer ss.conn.Close()
		defer ss.cancel()
		defer func() {
			for i := 0; i < min(len(got), len(want)); i++ {
				if !slices.EqualFunc(got[i], want[i], bytes.Equal) {
					t.Fatalf("command %d: frameReader %q, redcon %q", i, got[i], want[i])
				}
			}
		}()
		for i := 0; i < 1000; i++ {
			cmds, err := rd.ReadCommands()
			if err != nil {
				break
			}
			for _, c := range cmds {
				if !blank(c.Args) {
					got = append(got, c.Args)
				}
				if len(c.Args) == 0 {
					continue
				}
				size := 0
				for _, a := range c.Args {
					size += len(a)
				}
				if len(c.Args) > maxArgs && c.Raw[0] == '*' || size > maxQuery {
					t.Fatalf("guard passed a command over the limits: %d args, %d bytes", len(c.Args), size)
				}
				r := ss.newRequest(c.Args, c.Raw)
				if r.slot >= NumSlots || r.slot < -2 {
					t.Fatalf("slot %d", r.slot)
				}
				if info := ss.s.cl.cmds.Load().lookup(c.Args[0]); info != nil {
					idx, _ := info.keyIndexes(c.Args, make([]int, 0, 4))
					for _, k := range idx {
						if k <= 0 || k >= len(c.Args) {
							t.Fatalf("key index %d of %d args", k, len(c.Args))
						}
					}
				}
			}
		}
		if cr.n > int64(len(data)) {
			t.Fatalf("guard passed %d bytes of %d", cr.n, len(data))
		}
	})
}

func blank(args [][]byte) bool { return len(bytes.TrimSpace(bytes.Join(args, nil))) == 0 }

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// FuzzReplyFramer feeds arbitrary backend bytes to the reply framer: it must never panic,
// every frame it returns is exactly the next bytes of the stream, and memory stays within
// the limits it was given.
func FuzzReplyFramer(f *testing.F) {
	for _, s := range []string{
		"+OK\r\n", "-MOVED 3999 127.0.0.1:6381\r\n", ":42\r\n", "$5\r\nhello\r\n", "$-1\r\n",
		"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", "%1\r\n+k\r\n+v\r\n", "*-1\r\n", "$1073741824\r\nabc",
		"-ASK 1 :7000\r\n", "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nmsg\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rr := newReplyReader(bufio.NewReaderSize(bytes.NewReader(data), 16))
		rr.maxBulk, rr.maxElems = 1<<16, 1<<16
		var framed []byte
		for {
			rep, err := rr.next()
			if err != nil {
				break
			}
			framed = append(framed, rep...)
			if !bytes.HasPrefix(data, framed) {
				t.Fatalf("frames %q are not a prefix of the input", framed)
			}
			kind, slot, _ := parseRedirect(rep)
			if kind != redirNone && (slot < 0 || slot >= NumSlots) {
				t.Fatalf("redirect slot %d", slot)
			}
			splitArray(rep)
		}
	})
}

// TestOutputLimitSoft covers the soft limit: over it for SoftFor disconnects, going back
// under it resets the clock.
func TestOutputLimitSoft(t *testing.T) {
	var o outBuffer
	lim := config.OutputLimit{Hard: 1000, Soft: 100, SoftFor: 50 * time.Millisecond}
	if why := o.over(1001, lim); why != "hard" {
		t.Fatalf("over hard: %q", why)
	}
	if why := o.over(150, lim); why != "" {
		t.Fatalf("just over soft: %q", why)
	}
	time.Sleep(60 * time.Millisecond)
	if why := o.over(50, lim); why != "" {
		t.Fatalf("back under soft: %q", why)
	}
	if why := o.over(150, lim); why != "" {
		t.Fatalf("over soft again, clock restarted: %q", why)
	}
	time.Sleep(60 * time.Millisecond)
	if why := o.over(150, lim); why != "soft" {
		t.Fatalf("over soft for 60ms: %q", why)
	}
	if why := o.over(1<<40, config.OutputLimit{}); why != "" {
		t.Fatalf("no limits: %q", why)
	}
}

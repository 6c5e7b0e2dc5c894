package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

var (
	fuzzOnce   sync.Once
	fuzzServer *Server
)

// fuzzSession returns a session of a proxy that has no slot map and no network: routed
// commands end with ErrNoSlotMap at once, so the whole read side (limits, parsing,
// authentication, deny-list, MULTI queueing, local commands, command table, key positions,
// hash slots, multi-key splitting) runs without a cluster.
func fuzzSession() *session {
	fuzzOnce.Do(func() {
		cfg := config.Default()
		cfg.ClusterSeeds = []string{"127.0.0.1:1"}
		cfg.DenyCommands = []string{"keys"}
		fuzzServer = NewServer(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	})
	return newSessionState(fuzzServer, &loopConn{})
}

// FuzzClientRequest feeds arbitrary client bytes, in chunks of varying size, through the
// event loop's read side exactly as lclient.readable and process run it (the scanner's
// limits, then nextCommand) and routes every command. Nothing may panic, the scanner may
// pass no more than it read, every command it passes stays within the limits, and key
// positions and slots are in range.
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
		g := resp.NewScanner(resp.Limits{MaxBulk: maxBulk, MaxArgs: maxArgs, MaxInline: 1024, MaxQuery: maxQuery})
		ss := fuzzSession()
		defer ss.cancel()
		var in []byte
		passed := 0
		chunk := 1 + len(data)%7 // reads of varying size, as from a socket
		for off := 0; off < len(data) && g.Err() == nil; {
			end := min(off+chunk, len(data))
			read := data[off:end]
			ok := 0
			for ok < len(read) && g.Err() == nil {
				ok += g.Scan(read[ok:])
			}
			passed += ok
			in = append(in, read[:ok]...)
			off = end
			for len(in) > 0 {
				args, raw, left, perr := resp.NextCommand(in, nil)
				if perr != "" {
					in = nil
					break
				}
				if args == nil && len(left) == len(in) {
					break // incomplete
				}
				in = left
				if len(args) == 0 {
					continue
				}
				size := 0
				for _, a := range args {
					size += len(a)
				}
				if len(args) > maxArgs && raw != nil || size > maxQuery {
					t.Fatalf("scanner passed a command over the limits: %d args, %d bytes", len(args), size)
				}
				if raw == nil {
					raw = resp.AppendCommand(nil, args...) // as runSlow frames an inline command
				}
				r := ss.newRequest(args, raw)
				if r.slot >= command.NumSlots || r.slot < slotQuit {
					t.Fatalf("slot %d", r.slot)
				}
				if info := ss.s.cl.cmds.Load().Lookup(args[0]); info != nil {
					idx, _ := info.KeyIndexes(args, make([]int, 0, 4))
					for _, k := range idx {
						if k <= 0 || k >= len(args) {
							t.Fatalf("key index %d of %d args", k, len(args))
						}
					}
				}
			}
		}
		if passed > len(data) {
			t.Fatalf("scanner passed %d bytes of %d", passed, len(data))
		}
	})
}

// TestOutputLimitPolicy covers the one output-limit policy: over the hard limit at once;
// over the soft limit for SoftFor disconnects; going back under it resets the clock.
func TestOutputLimitPolicy(t *testing.T) {
	lim := config.OutputLimit{Hard: 1000, Soft: 100, SoftFor: 50 * time.Millisecond}
	ms := int64(time.Millisecond)
	var since int64
	for i, tc := range []struct {
		held int64
		at   int64 // ms
		want string
	}{
		{1001, 0, "hard"},
		{150, 1, ""},       // just over soft: the clock starts
		{150, 40, ""},      // over soft for 39 ms
		{50, 60, ""},       // back under soft: the clock stops
		{150, 70, ""},      // over soft again: the clock restarts
		{150, 110, ""},     // 40 ms
		{150, 120, "soft"}, // 50 ms
	} {
		if got := outputOver(tc.held, lim, &since, tc.at*ms); got != tc.want {
			t.Fatalf("step %d: outputOver(%d at %d ms) = %q, want %q", i, tc.held, tc.at, got, tc.want)
		}
	}
	if got := outputOver(1<<40, config.OutputLimit{}, &since, 0); got != "" {
		t.Fatalf("no limits: %q", got)
	}
}

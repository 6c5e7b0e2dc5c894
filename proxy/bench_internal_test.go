package proxy

import (
	"testing"

	"github.com/tidwall/redcon"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// Micro-benchmarks of the request path's pure functions; `go test -bench . -run ^$ ./proxy/`.
// BenchmarkProxyGET (bench_test.go) measures a whole request through a real cluster.

// BenchmarkParseCommand is what a loop does per command read: the guard's limit scan and
// redcon's parse of the bytes in the read buffer.
func BenchmarkParseCommand(b *testing.B) {
	cmd := []byte("*3\r\n$3\r\nSET\r\n$16\r\nkey:000000012345\r\n$64\r\n" + string(make([]byte, 64)) + "\r\n")
	g := resp.NewScanner(resp.Limits{MaxBulk: 512 << 20, MaxArgs: 1 << 20, MaxInline: 64 << 10, MaxQuery: 1 << 30})
	args := make([][]byte, 0, 8)
	b.SetBytes(int64(len(cmd)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if g.Scan(cmd) != len(cmd) || g.Err() != nil {
			b.Fatal("guard refused the command")
		}
		complete, a, _, _, err := redcon.ReadNextCommand(cmd, args[:0])
		if !complete || err != nil || len(a) != 3 {
			b.Fatal("not parsed")
		}
	}
}

// BenchmarkFastLookup is the per-command dispatch decision of a loop.
func BenchmarkFastLookup(b *testing.B) {
	s := &Server{}
	ft := buildFastTable(command.Builtin())
	s.fast.Store(&ft)
	names := [][]byte{[]byte("GET"), []byte("set"), []byte("MSet")}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if s.fastLookup(names[i%len(names)]) == nil {
			b.Fatal("not found")
		}
	}
}

package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

// TestTrackingTableMemory measures the heap the tracking table takes per key (keys of 20
// bytes, each read by one client, then by two) and checks it stays within a bound; the
// numbers are in docs/architecture.md.
func TestTrackingTableMemory(t *testing.T) {
	cfg := config.Default()
	cfg.TrackingTableMaxKeys = 0
	s := NewServer(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	defer s.Close()
	tr := s.track
	const n = 100000
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("user:%015d", i))
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	// The table's size is what dropping it frees: measured so, map growth garbage and
	// the test's own allocations do not count.
	retained := func(clients int) float64 {
		tr.mu.Lock()
		tr.keys = map[string][]uint64{}
		tr.mu.Unlock()
		for c := 1; c <= clients; c++ {
			for _, k := range keys {
				tr.add(uint64(c), [][]byte{k})
			}
		}
		if len(tr.keys) != n {
			t.Fatalf("%d keys in the table, want %d", len(tr.keys), n)
		}
		full := heap()
		tr.mu.Lock()
		tr.keys = map[string][]uint64{}
		tr.mu.Unlock()
		empty := heap()
		return float64(int64(full)-int64(empty)) / n
	}
	perKeyTwo := retained(2)
	perKey := retained(1)
	t.Logf("tracking table: %.0f bytes per 20-byte key read by one client, %.0f read by two", perKey, perKeyTwo)
	if perKey > 200 {
		t.Errorf("%.0f bytes per tracked key: more than 200", perKey)
	}
}

// BenchmarkTrackingAdd is the table's share of a tracked read: recording one key.
func BenchmarkTrackingAdd(b *testing.B) {
	cfg := config.Default()
	s := NewServer(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	defer s.Close()
	keys := make([][]byte, 4096)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("user:%015d", i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.track.add(uint64(i&7), keys[i&4095:i&4095+1])
	}
}

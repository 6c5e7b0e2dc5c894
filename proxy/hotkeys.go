package proxy

import (
	"hash/maphash"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// hotkeys estimates the most requested keys over a sliding window with bounded memory: a
// count-min sketch counts sampled keys, and a small candidate table keeps the keys with the
// highest estimates. Two generations (current and previous window) are kept so the report
// always covers between one and two windows. Keys never become metric labels.
type hotkeys struct {
	mu       sync.Mutex
	rate     int // count one in rate keys
	window   time.Duration
	seed     maphash.Seed
	tick     atomic.Uint64 // keys seen; only every rate-th takes mu
	cur, old *hkGen
	rotated  time.Time
}

const (
	hkDepth      = 4
	hkWidth      = 2048
	hkCandidates = 64
	hkMaxKeyLen  = 256
)

type hkGen struct {
	sketch [hkDepth][hkWidth]uint32
	cands  map[string]uint32
	// floor is at most the lowest estimate in cands: estimates only grow, and a candidate is
	// only replaced by a key with a higher one. A key estimated at or below it cannot enter,
	// which spares the scan for the weakest candidate on most samples.
	floor uint32
}

func newHKGen() *hkGen { return &hkGen{cands: make(map[string]uint32, hkCandidates)} }

func newHotkeys(rate int, window time.Duration) *hotkeys {
	return &hotkeys{rate: rate, window: window, seed: maphash.MakeSeed(), cur: newHKGen(), old: newHKGen(), rotated: time.Now()}
}

// observe counts one access to key (sampled).
func (h *hotkeys) observe(key []byte) {
	if h == nil || h.rate <= 0 {
		return
	}
	if h.tick.Add(1)%uint64(h.rate) != 0 {
		return // not sampled: no lock on the per-command path
	}
	h.record(key)
}

// observeHot is observe for an event loop: the loop's own countdown picks the sampled keys,
// so loops share nothing per command.
func (l *loop) observeHot(key []byte) {
	h := l.s.hot
	if h == nil || h.rate <= 0 {
		return
	}
	if l.hotLeft--; l.hotLeft > 0 {
		return
	}
	l.hotLeft = h.rate
	h.record(key)
}

// record counts a sampled access to key.
func (h *hotkeys) record(key []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.rotated) > h.window {
		h.old, h.cur, h.rotated = h.cur, newHKGen(), time.Now()
	}
	if len(key) > hkMaxKeyLen {
		key = key[:hkMaxKeyLen]
	}
	hv := maphash.Bytes(h.seed, key)
	est := ^uint32(0)
	g := h.cur
	for d := 0; d < hkDepth; d++ {
		i := (hv >> (16 * d)) % hkWidth
		g.sketch[d][i]++
		est = min(est, g.sketch[d][i])
	}
	if _, ok := g.cands[string(key)]; ok || len(g.cands) < hkCandidates {
		g.cands[string(key)] = est
		return
	}
	if est <= g.floor {
		return
	}
	// Replace the weakest candidate if this key now beats it.
	var weakest string
	wv := ^uint32(0)
	for k, v := range g.cands {
		if v < wv {
			weakest, wv = k, v
		}
	}
	g.floor = wv
	if est > wv {
		delete(g.cands, weakest)
		g.cands[string(key)] = est
	}
}

// HotKey is one entry of the hot key report.
type HotKey struct {
	Key string
	// PerSecond is the estimated request rate (samples scaled by the sample rate).
	PerSecond float64
}

// top returns up to n keys by estimated rate.
func (h *hotkeys) top(n int) []HotKey {
	if h == nil || h.rate <= 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	span := time.Since(h.rotated) + h.window
	counts := map[string]uint32{}
	for _, g := range []*hkGen{h.old, h.cur} {
		for k, v := range g.cands {
			counts[k] += v
		}
	}
	out := make([]HotKey, 0, len(counts))
	for k, v := range counts {
		out = append(out, HotKey{Key: k, PerSecond: float64(v) * float64(h.rate) / span.Seconds()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PerSecond > out[j].PerSecond })
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// HotKeys returns the n hottest keys (the admin listener's /debug/hotkeys).
func (s *Server) HotKeys(n int) []HotKey { return s.hot.top(n) }

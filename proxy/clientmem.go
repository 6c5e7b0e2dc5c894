package proxy

import (
	"runtime"
	"slices"
	"time"
)

// maxmemory-clients: a bound on the bytes held for all clients together, as Redis 7's.
// Every loop sums what its clients hold on its tick (and when Pub/Sub messages pile up)
// and publishes the sum; when the loops' sums together exceed the bound, each loop closes
// its clients holding the most, first, until it has freed its share of the excess.

// memory is what the proxy holds for the client: replies and messages not yet written
// (by its loop and by its slow path) and bytes read but not yet parsed.
func (c *lclient) memory() int64 {
	return c.pendingOut() + c.ss.out.bytes.Load() + int64(len(c.in))
}

// clientMemCheckBytes is how many bytes of Pub/Sub messages a loop takes in between two
// checks of maxmemory-clients besides the tick's.
const clientMemCheckBytes = 4 << 20

// noteClientMem counts n bytes taken in for clients; past clientMemCheckBytes since the
// last check, maxmemory-clients is checked now rather than on the next tick.
func (l *loop) noteClientMem(n int) {
	if l.s.conf().MaxmemoryClients <= 0 {
		return
	}
	if l.memSince += int64(n); l.memSince >= clientMemCheckBytes {
		l.checkClientMem()
	}
}

// checkClientMem publishes the loop's client memory and applies maxmemory-clients.
func (l *loop) checkClientMem() {
	l.memSince = 0
	limit := l.s.conf().MaxmemoryClients
	mine := int64(0)
	for c := range l.clients {
		mine += c.memory()
	}
	l.clientMem.Store(mine)
	total := int64(0)
	for _, o := range l.s.loops {
		total += o.clientMem.Load()
	}
	l.s.metrics.clientMemory.Set(float64(total))
	if limit <= 0 || total <= limit || mine == 0 {
		return
	}
	// This loop's share of the excess, from its largest clients down.
	free := (total - limit) * mine / total
	if free <= 0 {
		free = total - limit
	}
	type held struct {
		c *lclient
		n int64
	}
	var cs []held
	for c := range l.clients {
		if n := c.memory(); n > 0 {
			cs = append(cs, held{c, n})
		}
	}
	slices.SortFunc(cs, func(a, b held) int { return int(min(max(b.n-a.n, -1), 1)) })
	for _, h := range cs {
		if free <= 0 {
			break
		}
		l.s.metrics.clientMemEvicted.Inc()
		l.s.log.Warn("maxmemory-clients reached; closing the client holding the most", "client_id", h.c.ss.id,
			"addr", h.c.ss.conn.RemoteAddr().String(), "held_bytes", h.n, "clients_bytes", total, "maxmemory_clients", limit)
		h.c.close()
		l.s.collectFreed(h.n)
		free -= h.n
		mine -= h.n
	}
	l.clientMem.Store(mine)
}

// collectFreedMin is the memory a closed client must have held for collectFreed to run
// the garbage collector.
const collectFreedMin = 1 << 20

// collectFreed runs a garbage collection after a client holding held bytes was closed
// for a memory limit (at most one at a time, and one per 100 ms): without it the heap
// grows to twice what was live at the last collection before the freed bytes are reused,
// and RSS would be up to twice what the limits count.
func (s *Server) collectFreed(held int64) {
	if held < collectFreedMin || !s.gcRunning.CompareAndSwap(false, true) {
		return
	}
	go func() {
		runtime.GC()
		time.Sleep(100 * time.Millisecond)
		s.gcRunning.Store(false)
	}()
}

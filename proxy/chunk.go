package proxy

import (
	"math/bits"
	"unsafe"
)

// A chunk is a buffer that a node connection reads replies into and that clients of the
// same loop may reference instead of copying: a reply of at least refMin bytes goes from
// the chunk it was read into to its client's socket by reference (writev, outchain.go).
// References are counted on the loop's goroutine only; the node connection reading into
// the chunk holds one. A chunk whose last reference goes returns to its loop's pool.
//
// A client that does not read references no chunk beyond the pass in which its socket
// took nothing (wchain.unpin copies what it holds into memory of its own), so a slow
// client never pins a node's buffer and the output limits count bytes that the client
// alone holds. The references of a client that reads, and of a reply held for an earlier
// one still unanswered (another node's), last one tick at most, and a loop's clients pin
// heldRefBudget at most (loop.unpinHeld).
type chunk struct {
	buf    []byte
	refs   int32
	pinGen uint32 // unpinHeld's mark
}

const (
	// refMin is the least reply length queued by reference: below it a copy into the
	// client's contiguous buffer costs less than an I/O vector entry, and small replies
	// keep today's single write.
	refMin = 1 << 10
	// chunkMin is the size of a node connection's read chunk; a reply that needs more gets
	// a chunk of the next power of two (pooled up to chunkPoolMax, exact size above).
	chunkMin     = loopReadBuffer
	chunkClasses = 5 // 64 KiB .. 1 MiB
	chunkPoolMax = chunkMin << (chunkClasses - 1)
	// chunkKeepBytes bounds what a loop's pool keeps of each class; a tick in which no chunk
	// was taken lets half of the pool go.
	chunkKeepBytes = 16 << 20
)

// chunkPool is a loop's pool of free chunks by size class.
type chunkPool struct {
	free [chunkClasses][]*chunk
	used bool // a chunk was taken since the last trim
}

// class is the pool class of a chunk of at least size bytes, and that class's size;
// -1 for sizes above chunkPoolMax.
func chunkClass(size int) (int, int) {
	if size <= chunkMin {
		return 0, chunkMin
	}
	if size > chunkPoolMax {
		return -1, size
	}
	k := bits.Len(uint(size-1)) - bits.Len(uint(chunkMin-1))
	return k, chunkMin << k
}

// get returns a chunk of at least size bytes, holding one reference (the caller's).
func (p *chunkPool) get(size int) *chunk {
	p.used = true
	k, n := chunkClass(size)
	if k >= 0 {
		if f := p.free[k]; len(f) > 0 {
			ch := f[len(f)-1]
			f[len(f)-1] = nil
			p.free[k] = f[:len(f)-1]
			ch.refs = 1
			return ch
		}
	}
	return &chunk{buf: make([]byte, n), refs: 1}
}

// unref drops one reference to ch; the last returns it to the pool.
func (p *chunkPool) unref(ch *chunk) {
	ch.refs--
	if ch.refs > 0 {
		return
	}
	if ch.refs < 0 {
		panic("proxy: chunk reference count below zero")
	}
	k, n := chunkClass(len(ch.buf))
	if k < 0 || n != len(ch.buf) || (len(p.free[k])+1)*n > chunkKeepBytes {
		return // left to the garbage collector
	}
	p.free[k] = append(p.free[k], ch)
}

// trim lets half of each class go when no chunk was taken since the last trim (tick).
func (p *chunkPool) trim() {
	if p.used {
		p.used = false
		return
	}
	for k, f := range p.free {
		keep := len(f) / 2
		clear(f[keep:])
		p.free[k] = f[:keep]
	}
}

// holds reports whether b lies within ch's buffer.
func (ch *chunk) holds(b []byte) bool {
	if len(b) == 0 || len(ch.buf) == 0 {
		return false
	}
	d := uintptr(unsafe.Pointer(unsafe.SliceData(b))) - uintptr(unsafe.Pointer(unsafe.SliceData(ch.buf)))
	return d < uintptr(len(ch.buf)) && d+uintptr(len(b)) <= uintptr(len(ch.buf))
}

// refChunk returns the chunk that rep may be queued from by reference: that of the node
// connection whose replies are being handled, when rep lies in it and is long enough.
func (l *loop) refChunk(rep []byte) *chunk {
	if ch := l.repChunk; ch != nil && len(rep) >= refMin && ch.holds(rep) {
		return ch
	}
	return nil
}

// keepRaw gives r its own copy of the command raw (the read buffer is reused): in r's
// buffer, or, for a command of at least refMin bytes, in the loop's arena, a chunk filled
// one command after the other, from which the node connection writes it by reference
// (wchain.queueRef). The arena's chunk goes back to the pool when its last command is
// released.
func (l *loop) keepRaw(r *lreq, raw []byte) {
	if len(raw) < refMin {
		r.raw = append(r.raw[:0], raw...)
		return
	}
	if c := r.c; c != nil && c.inc != nil && c.inc.holds(raw) {
		// Read into the client's chunk (a command longer than one read): kept there.
		c.inc.refs++
		r.raw, r.rawc = raw[:len(raw):len(raw)], c.inc
		return
	}
	if l.arena == nil || len(l.arena.buf)-l.arenaOff < len(raw) {
		if l.arena != nil {
			l.chunks.unref(l.arena)
		}
		l.arena, l.arenaOff = l.chunks.get(max(len(raw), chunkMin)), 0
	}
	a := l.arena
	b := a.buf[l.arenaOff : l.arenaOff+len(raw) : l.arenaOff+len(raw)]
	copy(b, raw)
	l.arenaOff += len(raw)
	a.refs++
	r.raw, r.rawc = b, a
}

// readChunkSize is the size of the chunk a node connection reads into next, holding have
// bytes of a reply that needs need: room for several replies of that size, so that long
// replies are not moved to a new chunk one by one (up to chunkPoolMax; a reply longer
// than that gets a chunk of its own size).
func readChunkSize(have, need int) int {
	size := max(2*have, need, chunkMin)
	if need > chunkMin {
		size = max(size, min(4*need, chunkPoolMax))
	}
	return size
}

// inChunkMin is the unparsed length from which a client's bytes are kept in a chunk
// rather than in a buffer of its own: a long command is then read into the chunk its node
// connection writes it from (keepRaw), and a short partial command, the usual case at the
// end of a read, costs its own few bytes.
const inChunkMin = 16 << 10

// appendIn adds bytes read to the client's unparsed bytes.
func (c *lclient) appendIn(data []byte) {
	n := len(c.in) + len(data)
	if c.inc == nil && n < inChunkMin {
		c.in = append(c.in, data...)
		return
	}
	if c.inc == nil || n > len(c.inc.buf) {
		nc := c.l.chunks.get(max(n+n/2, chunkMin))
		copy(nc.buf, c.in)
		if c.inc != nil {
			c.l.chunks.unref(c.inc)
		}
		c.inc, c.in = nc, nc.buf[:len(c.in)]
	}
	c.in = append(c.in, data...) // within the chunk: no reallocation
}

// keepIn keeps rest, what process left unparsed (from the read buffer or from in), as the
// client's unparsed bytes, and lets a chunk go that is no longer needed. Commands kept by
// reference in the chunk stay valid: their bytes are never written over.
func (c *lclient) keepIn(rest []byte) {
	if len(rest) == 0 {
		c.in = nil
		if c.inc != nil {
			c.l.chunks.unref(c.inc)
			c.inc = nil
		}
		return
	}
	inChunk := c.inc != nil && c.inc.holds(rest)
	switch {
	case inChunk && c.inc.refs == 1:
		c.in = c.in[:copy(c.in[:cap(c.in)], rest)] // nothing references it: moved to the front
	case inChunk:
		// Commands before rest are referenced: rest goes to a buffer (or chunk) of its own.
		old := c.inc
		c.inc, c.in = nil, nil
		c.appendIn(rest)
		c.l.chunks.unref(old)
	case len(c.in) > 0 && c.inc == nil && &rest[0] == &c.in[len(c.in)-len(rest)]:
		c.in = c.in[:copy(c.in, rest)]
	default:
		if c.inc != nil {
			c.l.chunks.unref(c.inc)
			c.inc = nil
		}
		c.in = nil
		c.appendIn(rest) // owned: rest may be the loop's read buffer
	}
}

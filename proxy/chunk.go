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
// A client references a chunk for one pass of the loop at most: what it could not write by
// the end of the pass is copied then (wchain.unpin), so a slow client never pins a
// node's buffer and the output limits count bytes that the client alone holds. A reply
// held for an earlier one still unanswered (another node's) keeps its reference for one
// tick at most, and a loop's held replies pin heldRefBudget at most (loop.unpinHeld).
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
	chunkKeepBytes = 4 << 20
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

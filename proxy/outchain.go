package proxy

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// wchain is a connection's output: its contiguous buffer out (small replies or commands,
// copied) preceded, once a long one was queued by reference, by segs: the pending segments
// in order, each a slice of out's earlier bytes or a reference into a chunk (chunk.go).
// writeTo writes them with one writev. Client connections (replies) and node connections
// (commands) embed one.
type wchain struct {
	out      []byte // bytes to write after segs, from outOff
	outOff   int
	segs     []oseg // bytes to write before out: set once a reference was queued
	segOff   int    // bytes of segs[0] written
	segBytes int    // bytes in segs
}

// oseg is a pending output segment; ch is the chunk b lies in, nil for bytes of out.
type oseg struct {
	b  []byte
	ch *chunk
}

// maxIOV bounds the vectors of one writev (IOV_MAX is 1024 on Linux and FreeBSD).
const maxIOV = 1024

// outLen is the number of bytes queued and not yet written.
func (w *wchain) outLen() int { return w.segBytes - w.segOff + len(w.out) - w.outOff }

// queueRef queues b, which lies in ch, by reference (one more reference to ch).
func (w *wchain) queueRef(l *loop, b []byte, ch *chunk) {
	w.queueOwned(l, b)
	ch.refs++
	w.segs[len(w.segs)-1].ch = ch
}

// queueOwned queues b, which nothing else uses or changes, as it is.
func (w *wchain) queueOwned(l *loop, b []byte) {
	if w.segs == nil {
		if n := len(l.freeSegs); n > 0 {
			w.segs = l.freeSegs[n-1]
			l.freeSegs = l.freeSegs[:n-1]
		}
	}
	w.sealOut()
	w.segs = append(w.segs, oseg{b: b})
	w.segBytes += len(b)
}

// sealOut moves out's pending bytes into segs, so that what is queued next is written
// after them.
func (w *wchain) sealOut() {
	if w.outOff < len(w.out) {
		w.segs = append(w.segs, oseg{b: w.out[w.outOff:len(w.out):len(w.out)]})
		w.segBytes += len(w.out) - w.outOff
		w.outOff = len(w.out)
	}
}

// writeTo writes what is queued to fd (write, or writev when there are segments) and
// drops what was written. It returns the bytes written and the error of a failed write
// (EAGAIN included).
func (w *wchain) writeTo(l *loop, fd int) (int, error) {
	if len(w.segs) == 0 {
		n, err := sysWrite(fd, w.out[w.outOff:])
		if n > 0 {
			w.outOff += n
		}
		return max(n, 0), err
	}
	iov := l.iov[:0]
	all := true // every segment is in iov: out's bytes may follow them
	for i, sg := range w.segs {
		if len(iov) == maxIOV-1 {
			all = false
			break
		}
		b := sg.b
		if i == 0 {
			b = b[w.segOff:]
		}
		iov = append(iov, unix.Iovec{Base: unsafe.SliceData(b)})
		iov[len(iov)-1].SetLen(len(b))
	}
	if all && w.outOff < len(w.out) {
		b := w.out[w.outOff:]
		iov = append(iov, unix.Iovec{Base: unsafe.SliceData(b)})
		iov[len(iov)-1].SetLen(len(b))
	}
	n, err := sysWritev(fd, iov)
	clear(iov) // drop the pointers: the loop keeps the array
	l.iov = iov[:0]
	if n <= 0 {
		return 0, err
	}
	// Drop what was written: whole segments, then a part of one or of out.
	left := n
	for left > 0 && len(w.segs) > 0 {
		if sl := len(w.segs[0].b) - w.segOff; left < sl {
			w.segOff += left
			return n, nil
		} else {
			left -= sl
		}
		w.dropSeg(l)
	}
	w.outOff += left
	return n, nil
}

// dropSeg removes the first segment, releasing its reference.
func (w *wchain) dropSeg(l *loop) {
	sg := w.segs[0]
	w.segBytes -= len(sg.b)
	w.segOff = 0
	if sg.ch != nil {
		l.chunks.unref(sg.ch)
	}
	w.segs[0] = oseg{}
	w.segs = w.segs[1:]
	if len(w.segs) == 0 {
		w.segs = l.segsBuf(w.segs)
	}
}

// segsBuf keeps the array of an emptied segment list for reuse and returns nil, so that
// an idle connection holds none.
func (l *loop) segsBuf(s []oseg) []oseg {
	if cap(s) > 0 && cap(s) <= 64 && len(l.freeSegs) < 256 {
		l.freeSegs = append(l.freeSegs, s[:0:cap(s)])
	}
	return nil
}

// unpin copies the pending bytes that reference chunks into memory of the connection's
// own: a client that could not take its replies by the end of a pass does not pin a
// node's chunk, and its output limit counts what it really holds.
func (w *wchain) unpin(l *loop) {
	for i := range w.segs {
		sg := &w.segs[i]
		if sg.ch == nil {
			continue
		}
		b := sg.b
		if i == 0 {
			w.segBytes -= w.segOff
			b, w.segOff = b[w.segOff:], 0
		}
		sg.b = append([]byte(nil), b...)
		l.chunks.unref(sg.ch)
		sg.ch = nil
	}
}

// releaseSegs drops every pending segment and its reference.
func (w *wchain) releaseSegs(l *loop) {
	for i, sg := range w.segs {
		if sg.ch != nil {
			l.chunks.unref(sg.ch)
		}
		w.segs[i] = oseg{}
	}
	w.segs = l.segsBuf(w.segs)
	w.segBytes, w.segOff = 0, 0
}

// recycleOut gives out back to the loop's pool of output buffers (when it is a size worth
// keeping) and leaves the connection without one.
func (w *wchain) recycleOut(l *loop) {
	if w.out != nil && cap(w.out) <= 64<<10 && len(l.outBufs) < 1024 {
		l.outBufs = append(l.outBufs, w.out[:0])
	}
	w.out, w.outOff = nil, 0
}

// writeRef queues a reply that lies in ch by reference.
func (c *lclient) writeRef(b []byte, ch *chunk) {
	c.queueRef(c.l, b, ch)
	c.l.stats.bytesOut += uint64(len(b))
	c.markDirty()
}

// writeOwned queues a message the client alone holds (a Pub/Sub message from its relay)
// without copying it.
func (c *lclient) writeOwned(b []byte) {
	c.queueOwned(c.l, b)
	c.l.stats.bytesOut += uint64(len(b))
	c.markDirty()
}

// sysWritev is writev(2) on a loop's non-blocking descriptor (see sysWrite).
func sysWritev(fd int, iov []unix.Iovec) (int, error) {
	if len(iov) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

package proxy

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestChunkClass(t *testing.T) {
	for _, tc := range []struct{ size, class, n int }{
		{1, 0, 64 << 10}, {64 << 10, 0, 64 << 10}, {64<<10 + 1, 1, 128 << 10},
		{200 << 10, 2, 256 << 10}, {1 << 20, 4, 1 << 20}, {1<<20 + 1, -1, 1<<20 + 1},
	} {
		if k, n := chunkClass(tc.size); k != tc.class || n != tc.n {
			t.Errorf("chunkClass(%d) = %d, %d; want %d, %d", tc.size, k, n, tc.class, tc.n)
		}
	}
}

// TestChunkPoolReusesAndLetsGo: a chunk comes back to the pool with its last reference,
// is handed out again, the pool keeps at most chunkKeepBytes of a class, lets half go on
// an idle tick, and never keeps a chunk above chunkPoolMax.
func TestChunkPoolReusesAndLetsGo(t *testing.T) {
	var p chunkPool
	a := p.get(100)
	a.refs++ // a client's reference
	p.unref(a)
	if len(p.free[0]) != 0 {
		t.Fatal("chunk pooled while referenced")
	}
	p.unref(a)
	if b := p.get(10); b != a || b.refs != 1 {
		t.Fatalf("pooled chunk not reused (got %p refs %d, want %p)", b, b.refs, a)
	}
	var cs []*chunk
	for i := 0; i < 2*chunkKeepBytes/chunkMin; i++ {
		cs = append(cs, p.get(chunkMin))
	}
	for _, c := range cs {
		p.unref(c)
	}
	if got := len(p.free[0]) * chunkMin; got != chunkKeepBytes {
		t.Fatalf("pool keeps %d bytes of a class, want %d", got, chunkKeepBytes)
	}
	p.trim() // the gets above count as use
	p.trim()
	if got := len(p.free[0]) * chunkMin; got != chunkKeepBytes/2 {
		t.Fatalf("after an idle tick the pool keeps %d bytes, want %d", got, chunkKeepBytes/2)
	}
	big := p.get(chunkPoolMax + 1)
	p.unref(big)
	for _, f := range p.free {
		for _, c := range f {
			if c == big {
				t.Fatal("a chunk above chunkPoolMax was pooled")
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a reference dropped twice went unnoticed")
		}
	}()
	p.unref(big)
}

// TestWchainWritesInOrderAndDetaches: bytes copied and bytes referenced leave in the order
// they were queued, with one writev; what the socket does not take is copied into the
// connection's own memory and every chunk reference is dropped (a slow client pins no
// node buffer).
func TestWchainWritesInOrderAndDetaches(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, r := fds[0], os.NewFile(uintptr(fds[1]), "peer")
	defer unix.Close(w)
	defer r.Close()
	if err := unix.SetNonblock(w, true); err != nil {
		t.Fatal(err)
	}
	l := &loop{}
	ch := l.chunks.get(chunkMin)
	fill := func(b []byte, c byte) []byte {
		for i := range b {
			b[i] = c
		}
		return b
	}
	r1 := fill(ch.buf[0:5000], 'a')
	r2 := fill(ch.buf[5000:9000], 'b')
	var wc wchain
	var want []byte
	small := func(s string) {
		wc.out = append(wc.out, s...)
		want = append(want, s...)
	}
	small("+x\r\n")
	wc.queueRef(l, r1, ch)
	want = append(want, r1...)
	small("+y\r\n")
	wc.queueRef(l, r2, ch)
	want = append(want, r2...)
	small("+z\r\n")
	if ch.refs != 3 || wc.outLen() != len(want) {
		t.Fatalf("refs %d (want 3), queued %d (want %d)", ch.refs, wc.outLen(), len(want))
	}
	n, err := wc.writeTo(l, w)
	if err != nil || n != len(want) || wc.outLen() != 0 {
		t.Fatalf("writeTo: %d %v, %d left", n, err, wc.outLen())
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %v: bytes differ from what was queued", err)
	}
	if ch.refs != 1 || wc.segs != nil {
		t.Fatalf("after the write: refs %d (want 1: the owner's), segs %v", ch.refs, wc.segs)
	}

	// A peer that does not read: the socket takes part, unpin keeps the rest.
	want = want[:0]
	for i := 0; i < 64; i++ { // far more than a socket buffer
		c := l.chunks.get(chunkMin)
		want = append(want, fill(c.buf, byte('A'+i%26))...)
		wc.queueRef(l, c.buf, c)
		l.chunks.unref(c) // the node connection lets it go; the client's reference stays
		small("+k\r\n")
	}
	n, err = wc.writeTo(l, w)
	if err != nil || n <= 0 || wc.outLen() != len(want)-n {
		t.Fatalf("partial writeTo: %d %v, %d left of %d", n, err, wc.outLen(), len(want))
	}
	wc.unpin(l)
	for _, sg := range wc.segs {
		if sg.ch != nil {
			t.Fatal("a segment still references a chunk after unpin")
		}
	}
	if wc.outLen() != len(want)-n {
		t.Fatalf("after unpin: %d left (want %d)", wc.outLen(), len(want)-n)
	}
	pooled := 0
	for _, f := range l.chunks.free {
		pooled += len(f)
	}
	if pooled != min(64, chunkKeepBytes/chunkMin) {
		t.Fatalf("%d chunks back in the pool after unpin, want every one (%d)", pooled, min(64, chunkKeepBytes/chunkMin))
	}
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(r, int64(len(want))))
		done <- b
	}()
	for wc.outLen() > 0 {
		if _, err := wc.writeTo(l, w); err != nil && err != unix.EAGAIN {
			t.Fatal(err)
		}
	}
	if b := <-done; !bytes.Equal(b, want) {
		t.Fatalf("the peer read %d bytes, not the %d queued in order", len(b), len(want))
	}
}

// TestLongCommandKeptInItsChunk: a client's unparsed bytes move into a chunk once they are
// long; a command kept from there is referenced, not copied, and stays intact while the
// client reads on (the rest moves to new memory instead of being written over).
func TestLongCommandKeptInItsChunk(t *testing.T) {
	l := &loop{}
	c := &lclient{l: l}
	c.appendIn([]byte("*3\r\n$3\r\nSET\r\n"))
	if c.inc != nil {
		t.Fatal("a short partial command was put in a chunk")
	}
	val := bytes.Repeat([]byte{'v'}, 3*inChunkMin)
	cmd := append([]byte(fmt.Sprintf("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n", len(val))), val...)
	cmd = append(cmd, "\r\n"...)
	c.in = nil
	c.appendIn(cmd[:inChunkMin+10])
	if c.inc == nil {
		t.Fatal("a long partial command was not put in a chunk")
	}
	c.appendIn(cmd[inChunkMin+10:])
	c.appendIn([]byte("*2\r\n$3\r\nGET\r\n")) // the start of the next command
	raw := c.in[:len(cmd)]
	r := &lreq{c: c}
	l.keepRaw(r, raw)
	if r.rawc != c.inc || c.inc.refs != 2 {
		t.Fatalf("the command was copied (rawc %p, chunk %p, refs %d)", r.rawc, c.inc, c.inc.refs)
	}
	ch := c.inc
	c.keepIn(c.in[len(cmd):])
	if c.inc == ch || string(c.in) != "*2\r\n$3\r\nGET\r\n" {
		t.Fatalf("the rest stayed in the referenced chunk, or changed: %q", c.in)
	}
	c.appendIn(bytes.Repeat([]byte{'x'}, 2*inChunkMin))
	if !bytes.Equal(r.raw, cmd) {
		t.Fatal("the kept command changed while the client read on")
	}
	l.release(r)
	if ch.refs != 0 {
		t.Fatalf("chunk still referenced %d times after the command was released", ch.refs)
	}
	c.keepIn(nil)
	if c.inc != nil || c.in != nil {
		t.Fatal("an idle client kept its chunk")
	}
}

// TestWchainMoreSegmentsThanOneWritev: with more segments than one writev takes, out's
// bytes still leave after every segment.
func TestWchainMoreSegmentsThanOneWritev(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, r := fds[0], os.NewFile(uintptr(fds[1]), "peer")
	defer unix.Close(w)
	defer r.Close()
	l := &loop{}
	ch := l.chunks.get(chunkMin)
	var wc wchain
	var want []byte
	for i := 0; i < 3*maxIOV; i++ {
		b := ch.buf[i%64*8 : i%64*8+8]
		copy(b, fmt.Sprintf("%08d", i%64))
		wc.queueRef(l, b, ch)
		want = append(want, b...)
	}
	wc.out = append(wc.out, "+tail\r\n"...)
	want = append(want, "+tail\r\n"...)
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(r, int64(len(want))))
		done <- b
	}()
	for wc.outLen() > 0 {
		if _, err := wc.writeTo(l, w); err != nil && err != unix.EAGAIN {
			t.Fatal(err)
		}
	}
	if b := <-done; !bytes.Equal(b, want) {
		t.Fatal("out's bytes overtook segments beyond one writev's vectors")
	}
}

package handoff

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestFrameEncodeDecode(t *testing.T) {
	b, err := encode(MsgClients, Clients{Clients: []Client{{VIP: "198.51.100.10", RESP3: true, User: "app", Name: "web-1"}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	typ, nfds, plen, err := decodeHeader(b)
	if err != nil || typ != MsgClients || nfds != 1 || plen != len(b)-headerLen {
		t.Fatalf("decodeHeader = %d %d %d %v", typ, nfds, plen, err)
	}
	m := Msg{Type: typ, Payload: b[headerLen:]}
	var cs Clients
	if err := m.Decode(&cs); err != nil || len(cs.Clients) != 1 || cs.Clients[0].User != "app" || !cs.Clients[0].RESP3 {
		t.Fatalf("decode = %+v %v", cs, err)
	}
	bad := [][]byte{
		nil,
		[]byte("XXXX\x00\x01\x05\x00\x00\x00\x00\x00"),
		append(append([]byte{}, b[:4]...), 0, 2, 5, 0, 0, 0, 0, 0),                    // frame version 2
		append(append([]byte{}, b[:4]...), 0, 1, 5, byte(MaxFDsPerMsg+1), 0, 0, 0, 0), // too many descriptors
		append(append([]byte{}, b[:4]...), 0, 1, 5, 0, 0x7f, 0xff, 0xff, 0xff),        // payload too large
	}
	for i, h := range bad {
		if _, _, _, err := decodeHeader(h); err == nil {
			t.Errorf("bad header %d accepted", i)
		}
	}
	if _, err := encode(MsgClients, Clients{}, MaxFDsPerMsg+1); !errors.Is(err, ErrTooMany) {
		t.Errorf("encode with %d descriptors: %v", MaxFDsPerMsg+1, err)
	}
}

func TestBatches(t *testing.T) {
	got := Batches(450, MaxFDsPerMsg)
	want := [][2]int{{0, 200}, {200, 400}, {400, 450}}
	if len(got) != len(want) {
		t.Fatalf("Batches = %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Batches = %v, want %v", got, want)
		}
	}
	if len(Batches(0, 200)) != 0 || len(Batches(3, 0)) != 3 {
		t.Fatal("Batches edge cases")
	}
}

func TestRoomArithmetic(t *testing.T) {
	if got := roomFrom(1024, 100, 64); got != 860 {
		t.Errorf("roomFrom = %d", got)
	}
	if got := roomFrom(100, 90, 64); got != 0 {
		t.Errorf("roomFrom over the limit = %d", got)
	}
	n, err := Room(0)
	if err != nil || n <= 0 {
		t.Errorf("Room = %d, %v", n, err)
	}
}

// pair returns two connected hand-over ends through a real socket in dir.
func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	dir, err := os.MkdirTemp("", "ho")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o700)
	ln, err := Listen(filepath.Join(dir, "h.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var srv *Conn
	var aerr error
	done := make(chan struct{})
	go func() { srv, aerr = ln.Accept(); close(done) }()
	cli, err := Dial(filepath.Join(dir, "h.sock"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	<-done
	if aerr != nil {
		t.Fatal(aerr)
	}
	t.Cleanup(func() { srv.Close(); cli.Close() })
	return srv, cli
}

// pipeFDs returns n pipe read ends whose write ends carry their index.
func pipeFDs(t *testing.T, n int) []int {
	var fds []int
	for i := 0; i < n; i++ {
		var p [2]int
		if err := unix.Pipe(p[:]); err != nil {
			t.Fatal(err)
		}
		unix.Write(p[1], []byte{byte(i)})
		unix.Close(p[1])
		fds = append(fds, p[0])
	}
	t.Cleanup(func() { closeAll(fds) })
	return fds
}

func TestSendRecvDescriptors(t *testing.T) {
	a, b := pair(t)
	fds := pipeFDs(t, MaxFDsPerMsg)
	go func() {
		a.Send(MsgClients, Clients{Clients: make([]Client, len(fds))}, fds)
		a.Send(MsgDone, Done{Passed: 7}, nil)
	}()
	m, err := b.Recv()
	if err != nil {
		t.Fatal(err)
	}
	defer m.CloseFDs()
	if m.Type != MsgClients || len(m.FDs) != MaxFDsPerMsg {
		t.Fatalf("got type %d with %d descriptors", m.Type, len(m.FDs))
	}
	for i, fd := range m.FDs {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC == 0 {
			t.Fatalf("descriptor %d not close-on-exec: %v", i, err)
		}
		var buf [1]byte
		if n, _ := unix.Read(fd, buf[:]); n != 1 || int(buf[0]) != i%256 {
			t.Fatalf("descriptor %d reads %v", i, buf)
		}
	}
	var d Done
	if err := b.expect(MsgDone, &d); err != nil || d.Passed != 7 {
		t.Fatalf("second message: %+v %v", d, err)
	}
}

// A message announcing more descriptors than it carries is refused.
func TestRecvDescriptorMismatch(t *testing.T) {
	a, b := pair(t)
	fds := pipeFDs(t, 2)
	frame, _ := encode(MsgClients, Clients{}, 3)
	go func() {
		a.rc.Write(func(fd uintptr) bool {
			unix.SendmsgN(int(fd), frame, unix.UnixRights(fds...), nil, 0)
			return true
		})
	}()
	if _, err := b.Recv(); !errors.Is(err, ErrFDMismatch) {
		t.Fatalf("Recv = %v, want ErrFDMismatch", err)
	}
}

type fakeCreds struct{ uid uint32 }

func (f fakeCreds) peerUID(int) (uint32, error) { return f.uid, nil }

// A peer running as another user is refused, on both ends.
func TestPeerCredentialsChecked(t *testing.T) {
	old := creds
	t.Cleanup(func() { creds = old })
	uid, err := creds.peerUID(-1)
	if err == nil {
		t.Fatalf("peerUID on a bad descriptor: uid %d", uid)
	}
	creds = fakeCreds{uid: uint32(os.Geteuid()) + 1}
	dir, _ := os.MkdirTemp("", "ho")
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o700)
	ln, err := Listen(filepath.Join(dir, "h.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errs := make(chan error, 1)
	go func() { _, err := ln.Accept(); errs <- err }()
	if _, err := Dial(filepath.Join(dir, "h.sock"), time.Second); !errors.Is(err, ErrPeerCreds) {
		t.Errorf("Dial = %v, want ErrPeerCreds", err)
	}
	if err := <-errs; !errors.Is(err, ErrPeerCreds) {
		t.Errorf("Accept = %v, want ErrPeerCreds", err)
	}
	// The real credentials of a real peer are this process's.
	creds = old
	a, _ := pair(t)
	if err := a.checkPeer(uint32(os.Geteuid())); err != nil {
		t.Errorf("checkPeer: %v", err)
	}
}

func TestSocketDirChecked(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	if _, err := Listen(filepath.Join(dir, "h.sock")); !errors.Is(err, ErrUnsafeDir) {
		t.Fatalf("Listen in a 0755 directory: %v", err)
	}
	os.Chmod(dir, 0o700)
	ln, err := Listen(filepath.Join(dir, "h.sock"))
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "h.sock"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v", fi.Mode())
	}
	if _, err := Listen(filepath.Join(dir, "h.sock")); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("second Listen: %v", err)
	}
	ln.Close()
	// A stale socket (nobody listens) is replaced; Dial reports no predecessor.
	if _, err := Dial(filepath.Join(dir, "h.sock"), time.Second); !errors.Is(err, ErrNoPredecessor) {
		t.Errorf("Dial to a stale socket: %v", err)
	}
	ln, err = Listen(filepath.Join(dir, "h.sock"))
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Remove()
	if _, err := os.Stat(filepath.Join(dir, "h.sock")); err == nil {
		t.Error("Remove left the socket")
	}
	if got := SocketPath("/usr/local/etc/redis-carp-proxy-b.conf"); got != "/var/run/redis-carp-proxy/redis-carp-proxy-b.sock" {
		t.Errorf("SocketPath = %s", got)
	}
	if got := SocketPath("/etc/x.conf"); got != "/var/run/redis-carp-proxy/redis-carp-proxy-x.sock" {
		t.Errorf("SocketPath = %s", got)
	}
}

// fakeSource serves pipe descriptors as listeners and clients.
type fakeSource struct {
	mu        sync.Mutex
	t         *testing.T
	idle      []int // client descriptors
	busy      int   // clients that never become idle
	stopped   []int
	resumed   bool
	listeners []int
}

func (f *fakeSource) Listeners() ([]ListenerInfo, []int, error) {
	var dups []int
	var infos []ListenerInfo
	for i, fd := range f.listeners {
		d, _ := unix.Dup(fd)
		dups = append(dups, d)
		infos = append(infos, ListenerInfo{Addr: "127.0.0.1:" + string(rune('0'+i)), TLS: i == 1})
	}
	return infos, dups, nil
}
func (f *fakeSource) StopAccepting(a []int) { f.mu.Lock(); f.stopped = a; f.mu.Unlock() }
func (f *fakeSource) ResumeAccepting()      { f.mu.Lock(); f.resumed = true; f.mu.Unlock() }
func (f *fakeSource) TakeIdle(max int) ([]Client, []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := min(max, len(f.idle))
	fds := f.idle[:n:n]
	f.idle = f.idle[n:]
	cs := make([]Client, n)
	for i := range cs {
		cs[i] = Client{Name: "c", Authed: true}
	}
	return cs, fds
}
func (f *fakeSource) Return(cs []Client, fds []int) {
	f.mu.Lock()
	f.idle = append(f.idle, fds...)
	f.mu.Unlock()
}
func (f *fakeSource) Remaining() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.idle) + f.busy }

type fakeSink struct {
	room      int
	adopted   []int
	listeners []ListenerInfo
	names     []string
}

func (f *fakeSink) OfferListeners(ls []ListenerInfo, fds []int) []int {
	f.listeners = ls
	closeAll(fds)
	return []int{0, 1}
}
func (f *fakeSink) AdoptClient(c Client, fd int) error {
	f.adopted = append(f.adopted, fd)
	f.names = append(f.names, c.Name)
	unix.Close(fd)
	return nil
}
func (f *fakeSink) Room() int { return f.room }

func runPair(t *testing.T, src *fakeSource, sink *fakeSink, giveOpts, takeOpts Options) (Result, Result, error, error) {
	a, b := pair(t)
	var gres, tres Result
	var gerr, terr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); gres, gerr = Give(context.Background(), a, src, giveOpts) }()
	go func() { defer wg.Done(); tres, terr = Take(context.Background(), b, sink, takeOpts) }()
	wg.Wait()
	return gres, tres, gerr, terr
}

// Clients go in batches within the receiver's credit; the old process keeps what never
// becomes idle and stops at its drain time.
func TestGiveTakeBatches(t *testing.T) {
	src := &fakeSource{t: t, idle: pipeFDs(t, 450), listeners: pipeFDs(t, 2), busy: 1}
	idle := append([]int(nil), src.idle...)
	src.idle = nil
	for _, fd := range idle { // Give closes what it sends: hand it duplicates
		d, _ := unix.Dup(fd)
		src.idle = append(src.idle, d)
	}
	sink := &fakeSink{room: 150}
	gres, tres, gerr, terr := runPair(t, src, sink, Options{Drain: 300 * time.Millisecond}, Options{})
	if gerr != nil || terr != nil {
		t.Fatalf("Give: %v, Take: %v", gerr, terr)
	}
	if gres.Passed != 450 || tres.Passed != 450 || len(sink.adopted) != 450 || gres.Kept != 1 || tres.Kept != 1 {
		t.Fatalf("give %+v take %+v adopted %d", gres, tres, len(sink.adopted))
	}
	if len(src.stopped) != 2 || len(sink.listeners) != 2 || !sink.listeners[1].TLS || gres.Listeners != 2 {
		t.Fatalf("listeners: stopped %v offered %+v", src.stopped, sink.listeners)
	}
	if gres.ListenerOnly || tres.ListenerOnly {
		t.Fatal("listener-only between equal versions")
	}
}

// A receiver without room gets no descriptors (credit 0) until it has some.
func TestGiveTakeNoRoom(t *testing.T) {
	src := &fakeSource{t: t, listeners: pipeFDs(t, 1)}
	for _, fd := range pipeFDs(t, 3) {
		d, _ := unix.Dup(fd)
		src.idle = append(src.idle, d)
	}
	sink := &fakeSink{room: 0}
	gres, _, gerr, terr := runPair(t, src, sink, Options{Drain: 50 * time.Millisecond}, Options{})
	if gerr != nil || terr != nil {
		t.Fatalf("Give: %v, Take: %v", gerr, terr)
	}
	if gres.Passed != 0 || len(sink.adopted) != 0 || gres.Kept != 3 {
		t.Fatalf("passed %d adopted %d kept %d with no room", gres.Passed, len(sink.adopted), gres.Kept)
	}
	closeAll(src.idle)
}

// A peer of another client-state version gets the listeners only, on both sides, and
// neither fails.
func TestIncompatibleVersionListenerOnly(t *testing.T) {
	for _, newer := range []bool{true, false} {
		src := &fakeSource{t: t, listeners: pipeFDs(t, 2)}
		for _, fd := range pipeFDs(t, 5) {
			d, _ := unix.Dup(fd)
			src.idle = append(src.idle, d)
		}
		sink := &fakeSink{room: 100}
		g, k := Options{}, Options{proto: Proto + 1}
		if !newer {
			g, k = k, g
		}
		gres, tres, gerr, terr := runPair(t, src, sink, g, k)
		if gerr != nil || terr != nil {
			t.Fatalf("Give: %v, Take: %v", gerr, terr)
		}
		if !gres.ListenerOnly || !tres.ListenerOnly || gres.Listeners != 2 || len(src.stopped) != 2 {
			t.Fatalf("give %+v take %+v", gres, tres)
		}
		if len(sink.adopted) != 0 || gres.Kept != 5 || tres.Kept != 5 {
			t.Fatalf("clients moved across versions: adopted %d kept %d", len(sink.adopted), gres.Kept)
		}
		closeAll(src.idle)
	}
}

// A process of another configuration is refused by both sides, before any descriptor.
func TestOtherInstanceRefused(t *testing.T) {
	src := &fakeSource{t: t, listeners: pipeFDs(t, 1)}
	sink := &fakeSink{room: 10}
	_, _, gerr, terr := runPair(t, src, sink, Options{Instance: "/a.conf"}, Options{Instance: "/b.conf"})
	if !errors.Is(gerr, ErrOtherInst) || !errors.Is(terr, ErrOtherInst) {
		t.Fatalf("Give: %v, Take: %v", gerr, terr)
	}
	if len(sink.listeners) != 0 || len(src.stopped) != 0 {
		t.Fatal("listeners passed to another instance")
	}
}

// A successor that dies mid-way leaves the old process serving: clients not sent are
// returned and its listeners re-opened.
func TestGiveSuccessorDies(t *testing.T) {
	a, b := pair(t)
	src := &fakeSource{t: t, listeners: pipeFDs(t, 1), busy: 1}
	done := make(chan error, 1)
	go func() { _, err := Give(context.Background(), a, src, Options{Drain: 5 * time.Second}); done <- err }()
	if _, err := b.hello(&Options{proto: Proto}); err != nil {
		t.Fatal(err)
	}
	m, err := b.Recv()
	if err != nil {
		t.Fatal(err)
	}
	m.CloseFDs()
	b.Send(MsgAccepting, Accepting{Adopted: []int{0}}, nil)
	b.Close()
	if err := <-done; err == nil {
		t.Fatal("Give succeeded with a dead successor")
	}
	if !src.resumed {
		t.Fatal("listeners not re-opened after the successor died")
	}
}

package carp

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun/cmdruntest"
)

// genlKernel answers generic netlink requests as FreeBSD does: nlctrl resolves "carp" to
// the family id the module got when it registered; a request to any other id gets
// NLMSG_ERROR ENOTSUP (sys/netlink/netlink_generic.c genl_handle_message, positive errno:
// netlink_message_writer.c); CARP_NL_CMD_GET answers vhid 10 with state, then DONE.
type genlKernel struct {
	mu     sync.Mutex
	family uint16 // 0: carp.ko not loaded (nlctrl answers ENOENT)
	state  State
	opens  int
	closes int
	sent   int
}

// enotsup is ENOTSUP as FreeBSD numbers it (sys/sys/errno.h: 45).
const enotsup = 45

type genlConn struct {
	k       *genlKernel
	pending [][]byte
	closed  bool
}

func (k *genlKernel) open() (nlConn, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.opens++
	return &genlConn{k: k}, nil
}

func nlMessage(typ, flags uint16, seq uint32, payload []byte) []byte {
	b := nle.AppendUint32(nil, uint32(nlmsgHdrLen+len(payload)))
	b = nle.AppendUint16(b, typ)
	b = nle.AppendUint16(b, flags)
	b = nle.AppendUint32(b, seq)
	b = nle.AppendUint32(b, 0)
	return append(b, payload...)
}

func nlErrorMessage(seq uint32, errno uint32) []byte {
	return nlMessage(nlmsgError, 0, seq, append(nle.AppendUint32(nil, errno), make([]byte, nlmsgHdrLen)...))
}

func (c *genlConn) send(b []byte) error {
	c.k.mu.Lock()
	defer c.k.mu.Unlock()
	if c.closed {
		return errors.New("send on a closed socket")
	}
	c.k.sent++
	msgs, err := parseMessages(b)
	if err != nil || len(msgs) != 1 {
		return fmt.Errorf("bad request: %v", err)
	}
	m := msgs[0]
	switch {
	case m.typ == genlIDCtrl && c.k.family == 0:
		c.pending = append(c.pending, nlErrorMessage(m.seq, 2)) // ENOENT
	case m.typ == genlIDCtrl:
		attrs := appendAttr(nil, ctrlAttrFamilyID, nle.AppendUint16(nil, c.k.family))
		c.pending = append(c.pending, nlMessage(genlIDCtrl, 0, m.seq, append([]byte{1, 1, 0, 0}, attrs...)))
	case m.typ == c.k.family && c.k.family != 0:
		attrs := appendAttrU32(appendAttrU32(nil, carpNLVHID, 10), carpNLState, uint32(c.k.state))
		c.pending = append(c.pending, nlMessage(c.k.family, 2, m.seq, append([]byte{carpNLCmdGet, 0, 0, 0}, attrs...)),
			nlMessage(nlmsgDone, 2, m.seq, nle.AppendUint32(nil, 0)))
	default:
		c.pending = append(c.pending, nlErrorMessage(m.seq, enotsup))
	}
	return nil
}

func (c *genlConn) recv(b []byte) (int, error) {
	if len(c.pending) == 0 {
		return 0, errors.New("recv: nothing pending")
	}
	n := copy(b, c.pending[0])
	c.pending = c.pending[1:]
	return n, nil
}

func (c *genlConn) Close() error {
	c.k.mu.Lock()
	defer c.k.mu.Unlock()
	c.closed = true
	c.k.closes++
	return nil
}

// One netlink socket per watcher, not per read (nl_attach starts a kernel thread per
// socket); after carp.ko is reloaded under another family id the stale id is forgotten and
// the read that noticed succeeds on a fresh socket.
func TestNetlinkReaderKeepsOneSocket(t *testing.T) {
	k := &genlKernel{family: 0x1a, state: Backup}
	r := &netlinkReader{open: k.open}
	for i := range 100 {
		if st, err := r.read("em0", 10); err != nil || st != Backup {
			t.Fatalf("read %d: %v %v", i, st, err)
		}
	}
	if k.opens != 1 || k.closes != 0 || k.sent != 101 {
		t.Fatalf("100 reads: %d sockets opened, %d closed, %d requests; want 1, 0, 101 (one family lookup)", k.opens, k.closes, k.sent)
	}
	// kldunload carp; kldload carp: the family comes back under another id.
	k.mu.Lock()
	k.family, k.state = 0x1b, Master
	k.mu.Unlock()
	if st, err := r.read("em0", 10); err != nil || st != Master {
		t.Fatalf("read after the module reload: %v %v", st, err)
	}
	if k.opens != 2 || k.closes != 1 || r.family != 0x1b {
		t.Fatalf("after the reload: %d opened, %d closed, family %#x", k.opens, k.closes, r.family)
	}
	// A vhid the interface does not have: ErrNoVHID over the same socket (no new kernel
	// thread per poll while it is missing), the family resolved again.
	opens := k.opens
	for range 3 {
		if _, err := r.read("em0", 11); !errors.Is(err, ErrNoVHID) {
			t.Fatalf("read of a missing vhid: %v", err)
		}
	}
	if k.opens != opens || r.family != 0 {
		t.Fatalf("missing vhid: %d sockets opened (was %d), family id %#x kept", k.opens, opens, r.family)
	}
	// carp.ko unloaded: the family is gone ("unavailable"; the socket is closed), and comes
	// back later.
	k.mu.Lock()
	k.family = 0
	k.mu.Unlock()
	if _, err := r.read("em0", 10); !errors.Is(err, errUnavailable) {
		t.Fatalf("read without carp.ko: %v", err)
	}
	k.mu.Lock()
	k.family = 0x1a
	k.mu.Unlock()
	if st, err := r.read("em0", 10); err != nil || st != Master {
		t.Fatalf("read after carp.ko is back: %v %v", st, err)
	}
	r.Close()
	if k.opens != k.closes {
		t.Fatalf("%d sockets opened, %d closed", k.opens, k.closes)
	}
}

// Started before carp.ko is loaded, netlink and SIOCGVH both answer "unavailable": the
// reader falls back to ifconfig, but tries the kernel readers again after fallbackReprobe
// instead of running ifconfig every poll for the life of the process.
func TestFallbacksAreReprobed(t *testing.T) {
	fr := cmdruntest.New(map[string]cmdruntest.Reply{"/sbin/ifconfig em0": {Stdout: readTestdata(t, "ifconfig-14.txt")}})
	var mu sync.Mutex
	loaded := false
	calls := map[string]int{}
	reader := func(name string) func(string, int) (State, error) {
		return func(string, int) (State, error) {
			mu.Lock()
			defer mu.Unlock()
			calls[name]++
			if !loaded {
				return Init, fmt.Errorf("%w: EPROTONOSUPPORT", errUnavailable)
			}
			return Backup, nil
		}
	}
	now := time.Unix(1_000_000, 0)
	src := &freebsdSource{vip: netip.MustParseAddr("2001:db8::100"), run: fr, ifname: "em0",
		readNetlink: reader("netlink"), readIoctl: reader("ioctl"), now: func() time.Time { return now }}
	for range 5 { // five polls, one second apart, before carp.ko is loaded: ifconfig
		if st, err := src.read(t.Context()); err != nil || st != Master {
			t.Fatalf("before the module: %v %v", st, err)
		}
		now = now.Add(time.Second)
	}
	if calls["netlink"] != 1 || calls["ioctl"] != 1 {
		t.Fatalf("kernel readers tried %v times within the re-probe interval", calls)
	}
	mu.Lock()
	loaded = true
	mu.Unlock()
	now = now.Add(fallbackReprobe)
	for range 3 {
		if st, err := src.read(t.Context()); err != nil || st != Backup {
			t.Fatalf("after the module: %v %v", st, err)
		}
	}
	if calls["netlink"] != 4 || calls["ioctl"] != 1 {
		t.Fatalf("after the re-probe: readers called %v, want netlink 4, ioctl 1", calls)
	}
	if n := strings.Count(fr.Log(), "$ /sbin/ifconfig em0"); n != 6 { // 5 reads + the vhid lookup
		t.Fatalf("ifconfig ran %d times:\n%s", n, fr.Log())
	}
}

package carp

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

func TestCarpGetRequestEncoding(t *testing.T) {
	got := carpGetRequest(0x1a, 7, "em0", 10)
	// nlmsghdr{len 36, type 0x1a, flags REQUEST|DUMP, seq 7, pid 0}, genlmsghdr{cmd GET},
	// CARP_NL_IFNAME "em0\0", CARP_NL_VHID 10.
	want := "24000000" + "1a00" + "0103" + "07000000" + "00000000" +
		"01000000" +
		"0800" + "0900" + "656d3000" +
		"0800" + "0100" + "0a000000"
	if h := hex.EncodeToString(got); h != want {
		t.Fatalf("request\n got %s\nwant %s", h, want)
	}
	// Attribute padding: a 5-byte name is padded to 8.
	got = carpGetRequest(0x1a, 1, "vtnet", 0)
	if len(got) != 16+4+4+8 || got[0] != byte(len(got)) {
		t.Fatalf("padded request: % x", got)
	}
}

func TestParseCarpReply(t *testing.T) {
	// A CARP_NL_CMD_GET reply as FreeBSD 14 sends it: vhid 10, MASTER, advbase 1,
	// advskew 100, peer 224.0.0.18, then an unknown attribute (15's VERSION) to skip.
	raw, _ := hex.DecodeString("50000000" + "1a00" + "0200" + "07000000" + "39300000" +
		"01000000" +
		"08000100" + "0a000000" +
		"08000200" + "02000000" +
		"08000300" + "01000000" +
		"08000400" + "64000000" +
		"08000700" + "e0000012" +
		"05000a00" + "02000000" +
		"0c000600" + "02000000" + "00000000")
	msgs, err := parseMessages(raw)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("parse: %v %v", msgs, err)
	}
	ci, err := parseCarpInfo(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if ci.vhid != 10 || ci.state != Master || ci.advbase != 1 || ci.advskew != 100 || hex.EncodeToString(ci.addr) != "e0000012" {
		t.Fatalf("decoded %+v", ci)
	}
}

func TestParseNetlinkBad(t *testing.T) {
	for name, h := range map[string]string{
		"message longer than buffer":   "ff000000" + "1a000000" + "0000000000000000",
		"message shorter than header":  "08000000" + "1a000000" + "0000000000000000",
		"trailing bytes":               "10000000" + "1a000000" + "0000000000000000" + "0102",
		"attribute longer than buffer": "1c000000" + "1a000000" + "0000000000000000" + "01000000" + "ff000100" + "00000000",
		"attribute shorter than hdr":   "1c000000" + "1a000000" + "0000000000000000" + "01000000" + "02000100" + "00000000",
	} {
		raw, _ := hex.DecodeString(h)
		msgs, err := parseMessages(raw)
		if err == nil {
			_, err = parseCarpInfo(msgs[0])
		}
		if !errors.Is(err, ErrNetlink) {
			t.Errorf("%s: err = %v, want ErrNetlink", name, err)
		}
	}
	// A reply without vhid/state is rejected, not read as INIT.
	raw, _ := hex.DecodeString("1c000000" + "1a000000" + "0000000000000000" + "01000000" + "08000300" + "01000000")
	msgs, _ := parseMessages(raw)
	if _, err := parseCarpInfo(msgs[0]); !errors.Is(err, ErrNetlink) {
		t.Fatalf("reply without state: %v", err)
	}
}

// fakeTransport replays recorded reply datagrams.
type fakeTransport struct {
	sent    [][]byte
	replies [][]byte
}

func (f *fakeTransport) send(b []byte) error { f.sent = append(f.sent, b); return nil }
func (f *fakeTransport) recv(b []byte) (int, error) {
	if len(f.replies) == 0 {
		return 0, errors.New("no more replies")
	}
	n := copy(b, f.replies[0])
	f.replies = f.replies[1:]
	return n, nil
}

func TestCarpGetDump(t *testing.T) {
	// Two vhids on the interface in two datagrams, a reply to an older request, then DONE.
	r1, _ := hex.DecodeString("24000000" + "1a000200" + "01000000" + "00000000" + "01000000" + "08000100" + "05000000" + "08000200" + "01000000")
	old, _ := hex.DecodeString("24000000" + "1a000200" + "63000000" + "00000000" + "01000000" + "08000100" + "0a000000" + "08000200" + "00000000")
	r2, _ := hex.DecodeString("24000000" + "1a000200" + "01000000" + "00000000" + "01000000" + "08000100" + "0a000000" + "08000200" + "02000000")
	done, _ := hex.DecodeString("14000000" + "03000200" + "01000000" + "00000000" + "00000000")
	ft := &fakeTransport{replies: [][]byte{r1, append(old, r2...), done}}
	c := &genlClient{t: ft}
	ci, err := c.carpGet(0x1a, "em0", 10)
	if err != nil || ci.state != Master {
		t.Fatalf("carpGet = %+v, %v", ci, err)
	}
	// Kernel error (ENOENT: no CARP on that interface) is returned as such.
	e, _ := hex.DecodeString("24000000" + "02000000" + "02000000" + "00000000" + "feffffff" + "00000000000000000000000000000000")
	c = &genlClient{t: &fakeTransport{replies: [][]byte{e}}, seq: 1}
	if _, err := c.carpGet(0x1a, "em0", 10); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("error reply: %v", err)
	}
	// DONE without the vhid: ErrNoVHID.
	c = &genlClient{t: &fakeTransport{replies: [][]byte{r1, done}}}
	if _, err := c.carpGet(0x1a, "em0", 10); !errors.Is(err, ErrNoVHID) {
		t.Fatalf("missing vhid: %v", err)
	}
}

// FreeBSD's NLMSG_ERROR and NLMSG_DONE carry a positive errno (netlink_message_writer.c:
// nlmsg_ack and nlmsg_end_dump store `error`), Linux's a negative one. Both must decode to
// the same errno, or the ENOENT checks never match on FreeBSD.
func TestNetlinkErrorBothSigns(t *testing.T) {
	for name, errno := range map[string]string{"FreeBSD +ENOENT": "02000000", "Linux -ENOENT": "feffffff"} {
		// NLMSG_ERROR, seq 1: errno, then the request's header.
		raw, _ := hex.DecodeString("24000000" + "02000000" + "01000000" + "00000000" + errno + "00000000000000000000000000000000")
		msgs, err := parseMessages(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := nlError(msgs[0]); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("%s: nlError = %v, want ENOENT", name, err)
		}
		// The carp family missing (nlctrl answers ENOENT) makes the next reader be used.
		c := &genlClient{t: &fakeTransport{replies: [][]byte{raw}}}
		if _, err := c.familyID(carpNLFamily); !errors.Is(netlinkError(err), errUnavailable) {
			t.Errorf("%s: family lookup error %v is not 'unavailable'", name, err)
		}
		// A vhid lookup answered ENOENT is ErrNoVHID.
		c = &genlClient{t: &fakeTransport{replies: [][]byte{raw}}}
		if _, err := c.carpGet(0x1a, "em0", 10); !errors.Is(err, ErrNoVHID) || !errors.Is(err, syscall.ENOENT) {
			t.Errorf("%s: carpGet = %v, want ErrNoVHID (ENOENT)", name, err)
		}
	}
}

// carp_nl_get reports a failure inside the dump in the NLMSG_DONE payload
// (nlmsg_end_dump(npt->nw, error, hdr)): that error, not "no such vhid".
func TestCarpGetDoneCarriesTheError(t *testing.T) {
	done := func(errno string) []byte {
		b, _ := hex.DecodeString("14000000" + "03000200" + "01000000" + "00000000" + errno)
		return b
	}
	c := &genlClient{t: &fakeTransport{replies: [][]byte{done("16000000")}}} // EINVAL, FreeBSD sign
	if _, err := c.carpGet(0x1a, "em0", 10); !errors.Is(err, syscall.EINVAL) || errors.Is(err, ErrNoVHID) {
		t.Fatalf("DONE with EINVAL: %v", err)
	}
	c = &genlClient{t: &fakeTransport{replies: [][]byte{done("02000000")}}} // ENOENT: no such vhid
	if _, err := c.carpGet(0x1a, "em0", 10); !errors.Is(err, ErrNoVHID) {
		t.Fatalf("DONE with ENOENT: %v", err)
	}
}

// SIOCGVH without carp.ko answers EPROTONOSUPPORT (sys/net/if.c: carp_ioctl_p == NULL):
// the ifconfig reader must take over, as for a kernel without the ioctl.
func TestIoctlErrors(t *testing.T) {
	for _, e := range []syscall.Errno{syscall.EPROTONOSUPPORT, syscall.ENOTTY, syscall.EOPNOTSUPP, syscall.ENOSYS} {
		if err := ioctlError(e); !errors.Is(err, errUnavailable) {
			t.Errorf("%v: %v, want unavailable", e, err)
		}
	}
	if err := ioctlError(syscall.ENOENT); !errors.Is(err, ErrNoVHID) {
		t.Errorf("ENOENT: %v", err)
	}
	if err := ioctlError(syscall.EPERM); errors.Is(err, errUnavailable) || errors.Is(err, ErrNoVHID) {
		t.Errorf("EPERM: %v", err)
	}
	for _, e := range []syscall.Errno{syscall.EAFNOSUPPORT, syscall.EPROTONOSUPPORT} {
		if err := netlinkError(fmt.Errorf("carp: generic netlink socket: %w", e)); !errors.Is(err, errUnavailable) {
			t.Errorf("netlink socket %v: %v", e, err)
		}
	}
}

// A unicast CARP vhid (FreeBSD 14+): CARP_NL_ADDR and CARP_NL_ADDR6 carry the peers
// (ip_carp.c carp_nl_send: sc_carpaddr, sc_carpaddr6).
func TestParseCarpReplyUnicastPeers(t *testing.T) {
	raw, _ := hex.DecodeString("40000000" + "1a00" + "0200" + "07000000" + "39300000" +
		"01000000" +
		"08000100" + "02000000" +
		"08000200" + "01000000" +
		"08000700" + "e0000012" + // peer 224.0.0.18 (IPv6 VIP: v4 stays multicast)
		"14000800" + "20010db8000000000000000000000012") // peer6 2001:db8::12
	msgs, err := parseMessages(raw)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("parse: %v %v", msgs, err)
	}
	ci, err := parseCarpInfo(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	p4, p6 := ci.peers()
	if ci.vhid != 2 || ci.state != Backup || p4.String() != "224.0.0.18" || p6.String() != "2001:db8::12" {
		t.Fatalf("decoded %+v: peer %v peer6 %v", ci, p4, p6)
	}
	// A peer attribute of the wrong length is ignored, not misread.
	ci.addr6 = ci.addr6[:8]
	if _, p6 := ci.peers(); p6.IsValid() {
		t.Fatalf("short peer6 decoded as %v", p6)
	}
}

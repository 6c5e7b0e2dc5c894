package netnslab

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// rtnl is a NETLINK_ROUTE socket opened inside one lab namespace, for address and
// neighbour changes that take microseconds instead of an ip(8) fork (the CARP
// emulator's transitions must be as close together as carp(4)'s).
type rtnl struct {
	mu    sync.Mutex
	fd    int
	eth0  int // ifindex of eth0 in that namespace
	seq   uint32
	label string
}

func openRTNL(t *testing.T, lab *Lab, ns string) *rtnl {
	t.Helper()
	r := &rtnl{label: ns}
	var err error
	if nerr := lab.InNS(ns, func() {
		var ifi *net.Interface
		if ifi, err = net.InterfaceByName("eth0"); err != nil {
			return
		}
		r.eth0 = ifi.Index
		r.fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	}); nerr != nil {
		t.Fatal(nerr)
	}
	if err != nil {
		t.Fatalf("rtnetlink in %s: %v", ns, err)
	}
	t.Cleanup(func() { unix.Close(r.fd) })
	return r
}

func nlAttr(typ uint16, data []byte) []byte {
	b := make([]byte, 4, 4+len(data)+3)
	binary.NativeEndian.PutUint16(b[0:], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(b[2:], typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// do sends one request and waits for its acknowledgement.
func (r *rtnl) do(typ, flags uint16, body []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	msg = append(msg, body...)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], r.seq)
	if err := unix.Sendto(r.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("%s: rtnetlink send: %w", r.label, err)
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(r.fd, buf, 0)
		if err != nil {
			return fmt.Errorf("%s: rtnetlink recv: %w", r.label, err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != r.seq || m.Header.Type != unix.NLMSG_ERROR {
				continue
			}
			if e := int32(binary.NativeEndian.Uint32(m.Data[0:4])); e != 0 {
				return fmt.Errorf("%s: rtnetlink: %w", r.label, syscall.Errno(-e))
			}
			return nil
		}
	}
}

// addr adds (or deletes) a/bits on eth0.
func (r *rtnl) addr(add bool, a netip.Addr, bits int) error {
	body := []byte{unix.AF_INET, byte(bits), 0, 0, 0, 0, 0, 0}
	binary.NativeEndian.PutUint32(body[4:], uint32(r.eth0))
	ip := a.AsSlice()
	body = append(body, nlAttr(unix.IFA_LOCAL, ip)...)
	body = append(body, nlAttr(unix.IFA_ADDRESS, ip)...)
	if add {
		return r.do(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, body)
	}
	return r.do(unix.RTM_DELADDR, 0, body)
}

// neigh sets eth0's neighbour entry for a to mac (what a gratuitous ARP does).
func (r *rtnl) neigh(a netip.Addr, mac net.HardwareAddr) error {
	body := make([]byte, unix.SizeofNdMsg)
	body[0] = unix.AF_INET
	binary.NativeEndian.PutUint32(body[4:], uint32(r.eth0))
	binary.NativeEndian.PutUint16(body[8:], unix.NUD_REACHABLE)
	body = append(body, nlAttr(unix.NDA_DST, a.AsSlice())...)
	body = append(body, nlAttr(unix.NDA_LLADDR, mac)...)
	return r.do(unix.RTM_NEWNEIGH, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, body)
}

package carp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// A small generic netlink codec. FreeBSD (14+) netlink uses Linux's wire format, so this
// code is the same on both and is tested on Linux against real generic netlink families.
// All integers are in host byte order; both targets (amd64, arm64) are little-endian.

const (
	nlmsgHdrLen = 16 // struct nlmsghdr: len u32, type u16, flags u16, seq u32, pid u32
	genlHdrLen  = 4  // struct genlmsghdr: cmd u8, version u8, reserved u16
	nlaHdrLen   = 4  // struct nlattr: len u16, type u16

	nlmsgError = 2
	nlmsgDone  = 3

	nlmFRequest = 0x1
	nlmFDump    = 0x300 // NLM_F_ROOT | NLM_F_MATCH

	netlinkGeneric = 16 // NETLINK_GENERIC, on Linux and FreeBSD

	genlIDCtrl         = 0x10 // the nlctrl family
	ctrlCmdGetFamily   = 3
	ctrlAttrFamilyID   = 1
	ctrlAttrFamilyName = 2

	// sys/netinet/ip_carp_nl.h
	carpNLFamily   = "carp"
	carpNLCmdGet   = 1
	carpNLVHID     = 1 // u32
	carpNLState    = 2 // u32
	carpNLAdvbase  = 3 // s32
	carpNLAdvskew  = 4 // s32
	carpNLAddr     = 7 // in_addr: where IPv4 advertisements go (peer, or 224.0.0.18)
	carpNLAddr6    = 8 // in6_addr: where IPv6 advertisements go (peer6, or ff02::12)
	carpNLIfname   = 9 // string
	nlAttrTypeMask = 0x3fff
)

var nle = binary.LittleEndian

func nlAlign(n int) int { return (n + 3) &^ 3 }

// nlAttr is one netlink attribute.
type nlAttr struct {
	typ  uint16
	data []byte
}

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = nle.AppendUint16(b, uint16(nlaHdrLen+len(data)))
	b = nle.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func appendAttrString(b []byte, typ uint16, s string) []byte {
	return appendAttr(b, typ, append([]byte(s), 0))
}

func appendAttrU32(b []byte, typ uint16, v uint32) []byte {
	return appendAttr(b, typ, nle.AppendUint32(nil, v))
}

// parseAttrs splits an attribute list; it rejects lengths that run past the buffer.
func parseAttrs(b []byte) ([]nlAttr, error) {
	var attrs []nlAttr
	for len(b) >= nlaHdrLen {
		l := int(nle.Uint16(b))
		if l < nlaHdrLen || l > len(b) {
			return nil, fmt.Errorf("%w: attribute length %d with %d bytes left", ErrNetlink, l, len(b))
		}
		attrs = append(attrs, nlAttr{typ: nle.Uint16(b[2:]) & nlAttrTypeMask, data: b[nlaHdrLen:l]})
		b = b[min(nlAlign(l), len(b)):]
	}
	return attrs, nil
}

func attrU32(a nlAttr) (uint32, bool) {
	if len(a.data) < 4 {
		return 0, false
	}
	return nle.Uint32(a.data), true
}

// genlRequest encodes a generic netlink request: nlmsghdr, genlmsghdr, attributes.
func genlRequest(family uint16, flags uint16, seq uint32, cmd, version uint8, attrs []byte) []byte {
	n := nlmsgHdrLen + genlHdrLen + len(attrs)
	b := make([]byte, 0, n)
	b = nle.AppendUint32(b, uint32(n))
	b = nle.AppendUint16(b, family)
	b = nle.AppendUint16(b, flags|nlmFRequest)
	b = nle.AppendUint32(b, seq)
	b = nle.AppendUint32(b, 0) // pid: the kernel fills it in
	b = append(b, cmd, version, 0, 0)
	return append(b, attrs...)
}

// nlMsg is one received netlink message.
type nlMsg struct {
	typ, flags uint16
	seq        uint32
	payload    []byte
}

// parseMessages splits a datagram into messages.
func parseMessages(b []byte) ([]nlMsg, error) {
	var msgs []nlMsg
	for len(b) >= nlmsgHdrLen {
		l := int(nle.Uint32(b))
		if l < nlmsgHdrLen || l > len(b) {
			return nil, fmt.Errorf("%w: message length %d with %d bytes left", ErrNetlink, l, len(b))
		}
		msgs = append(msgs, nlMsg{typ: nle.Uint16(b[4:]), flags: nle.Uint16(b[6:]), seq: nle.Uint32(b[8:]), payload: b[nlmsgHdrLen:l]})
		b = b[min(nlAlign(l), len(b)):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrNetlink, len(b))
	}
	return msgs, nil
}

// nlError decodes the errno at the start of an NLMSG_ERROR payload (struct nlmsgerr) or
// of an NLMSG_DONE payload (a dump's result): 0 is success. Linux sends a negative errno;
// FreeBSD a positive one (sys/netlink/netlink_message_writer.c, nlmsg_ack and
// nlmsg_end_dump: `error`, not `-error`; only its Linux compat layer negates it). Both
// are accepted.
func nlError(m nlMsg) error {
	if len(m.payload) < 4 {
		return fmt.Errorf("%w: short netlink error/done message", ErrNetlink)
	}
	e := int32(nle.Uint32(m.payload))
	if e < 0 {
		e = -e
	}
	if e != 0 {
		return syscall.Errno(e)
	}
	return nil
}

// genlAttrs returns the attributes of a generic netlink reply.
func genlAttrs(m nlMsg) ([]nlAttr, error) {
	if len(m.payload) < genlHdrLen {
		return nil, fmt.Errorf("%w: short generic netlink message", ErrNetlink)
	}
	return parseAttrs(m.payload[genlHdrLen:])
}

// nlTransport sends one request datagram and receives reply datagrams (a netlink socket).
type nlTransport interface {
	send(b []byte) error
	recv(b []byte) (int, error)
}

// genlClient runs generic netlink requests over a transport, one at a time.
type genlClient struct {
	t   nlTransport
	seq uint32
	buf []byte
}

// roundTrip sends req (built with seq) and collects the replies to it: for a dump, every
// message up to NLMSG_DONE; otherwise the single reply or the error.
func (c *genlClient) roundTrip(req []byte, seq uint32, dump bool) ([]nlMsg, error) {
	if err := c.t.send(req); err != nil {
		return nil, err
	}
	if c.buf == nil {
		c.buf = make([]byte, 64<<10)
	}
	var out []nlMsg
	for {
		n, err := c.t.recv(c.buf)
		if err != nil {
			return nil, err
		}
		msgs, err := parseMessages(c.buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.seq != seq {
				continue // a late reply to an earlier request
			}
			switch m.typ {
			case nlmsgError:
				if err := nlError(m); err != nil {
					return nil, err
				}
				if !dump {
					return out, nil
				}
			case nlmsgDone:
				// A dump that failed part-way reports why here (FreeBSD's
				// nlmsg_end_dump); Linux sends 0 or nothing.
				if len(m.payload) >= 4 {
					if err := nlError(m); err != nil {
						return nil, err
					}
				}
				return out, nil
			default:
				// Copy: the buffer is reused by the next recv.
				m.payload = append([]byte(nil), m.payload...)
				out = append(out, m)
				if !dump {
					return out, nil
				}
			}
		}
	}
}

func (c *genlClient) nextSeq() uint32 {
	c.seq++
	return c.seq
}

// familyID resolves a generic netlink family name through nlctrl.
func (c *genlClient) familyID(name string) (uint16, error) {
	seq := c.nextSeq()
	req := genlRequest(genlIDCtrl, 0, seq, ctrlCmdGetFamily, 1, appendAttrString(nil, ctrlAttrFamilyName, name))
	msgs, err := c.roundTrip(req, seq, false)
	if err != nil {
		return 0, fmt.Errorf("netlink family %q: %w", name, err)
	}
	for _, m := range msgs {
		attrs, err := genlAttrs(m)
		if err != nil {
			return 0, fmt.Errorf("netlink family %q: %w", name, err)
		}
		for _, a := range attrs {
			if a.typ == ctrlAttrFamilyID && len(a.data) >= 2 {
				return nle.Uint16(a.data), nil
			}
		}
	}
	return 0, fmt.Errorf("netlink family %q: %w: no family id in the reply", name, ErrNetlink)
}

// carpInfo is one vhid as CARP_NL_CMD_GET reports it.
type carpInfo struct {
	vhid             uint32
	state            State
	advbase, advskew int32
	addr             []byte // CARP_NL_ADDR (the peer), if present
	addr6            []byte // CARP_NL_ADDR6 (the IPv6 peer), if present
}

// peers returns the peer addresses (invalid where absent or malformed).
func (ci carpInfo) peers() (peer, peer6 netip.Addr) {
	if len(ci.addr) == 4 {
		peer = netip.AddrFrom4([4]byte(ci.addr))
	}
	if len(ci.addr6) == 16 {
		peer6 = netip.AddrFrom16([16]byte(ci.addr6))
	}
	return peer, peer6
}

// carpGetRequest encodes CARP_NL_CMD_GET for one vhid of ifname (vhid 0: all of them).
func carpGetRequest(family uint16, seq uint32, ifname string, vhid uint32) []byte {
	attrs := appendAttrString(nil, carpNLIfname, ifname)
	if vhid != 0 {
		attrs = appendAttrU32(attrs, carpNLVHID, vhid)
	}
	return genlRequest(family, nlmFDump, seq, carpNLCmdGet, 0, attrs)
}

// parseCarpInfo decodes one CARP_NL_CMD_GET reply.
func parseCarpInfo(m nlMsg) (carpInfo, error) {
	attrs, err := genlAttrs(m)
	if err != nil {
		return carpInfo{}, err
	}
	var ci carpInfo
	var haveVHID, haveState bool
	for _, a := range attrs {
		v, ok := attrU32(a)
		switch a.typ {
		case carpNLVHID:
			ci.vhid, haveVHID = v, ok
		case carpNLState:
			ci.state, haveState = State(v), ok
		case carpNLAdvbase:
			ci.advbase = int32(v)
		case carpNLAdvskew:
			ci.advskew = int32(v)
		case carpNLAddr:
			ci.addr = a.data
		case carpNLAddr6:
			ci.addr6 = a.data
		}
	}
	if !haveVHID || !haveState {
		return carpInfo{}, fmt.Errorf("%w: carp reply without vhid or state", ErrNetlink)
	}
	return ci, nil
}

// carpGet asks the kernel's "carp" family for vhid on ifname. ENOENT (the interface has
// no CARP, or not this vhid: carp_ioctl_get) is ErrNoVHID; any other error is returned.
func (c *genlClient) carpGet(family uint16, ifname string, vhid uint32) (carpInfo, error) {
	seq := c.nextSeq()
	msgs, err := c.roundTrip(carpGetRequest(family, seq, ifname, vhid), seq, true)
	if errors.Is(err, syscall.ENOENT) {
		return carpInfo{}, fmt.Errorf("%w: %w", ErrNoVHID, err)
	}
	if err != nil {
		return carpInfo{}, err
	}
	for _, m := range msgs {
		ci, err := parseCarpInfo(m)
		if err != nil {
			return carpInfo{}, err
		}
		if ci.vhid == vhid {
			return ci, nil
		}
	}
	return carpInfo{}, ErrNoVHID
}

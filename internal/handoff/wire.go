// Package handoff passes a running proxy's listening sockets and idle client
// connections to its successor (an in-place restart or upgrade) over a unix socket:
// SCM_RIGHTS in batches, peer credentials checked, the messages versioned. It knows
// nothing of the proxy: the daemon wires a Source (the old process) and a Sink (the new
// one) to it.
package handoff

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// The frame header never changes: every version of the proxy can read the header, the
// Hello and the Listeners message of every other, which is what an incompatible peer
// falls back to (listener-only hand-over).
const (
	// FrameVersion is the version of the frame header (magic, version, type, counts).
	FrameVersion = 1
	// Proto is the version of the client-state messages (Clients, Credit). A peer with
	// another Proto gets the listeners only; its clients are drained and closed as before.
	Proto = 1
	// MaxFDsPerMsg bounds the descriptors of one message: SCM_RIGHTS carries at most 253
	// on Linux (SCM_MAX_FD), and FreeBSD refuses a control buffer over 2 KiB (EINVAL).
	MaxFDsPerMsg = 200
	// MaxPayload bounds a message's payload: a peer cannot make the receiver allocate more.
	MaxPayload = 1 << 20
	headerLen  = 12
)

var magic = [4]byte{'R', 'C', 'P', 'H'}

// MsgType is the kind of a message.
type MsgType uint8

// The messages, in the order of a hand-over: both send Hello; the old process sends
// Listeners; the new one answers Accepting once it accepts on them (the old one then
// stops accepting on those), then Credit (how many descriptors it can take now); the
// old one sends Clients batches within the credit, and Done when it has none left.
const (
	MsgHello     MsgType = 1
	MsgListeners MsgType = 2
	MsgAccepting MsgType = 3
	MsgCredit    MsgType = 4
	MsgClients   MsgType = 5
	MsgDone      MsgType = 6
)

// Hello opens a hand-over in both directions.
type Hello struct {
	Proto   int    `json:"proto"`
	Version string `json:"version"` // the binary's version, for the logs
	PID     int    `json:"pid"`
	// Instance names the configuration (its file): a process takes over only from one
	// of the same instance.
	Instance string `json:"instance"`
}

// ListenerInfo describes the listening socket passed as the descriptor of the same index.
type ListenerInfo struct {
	Addr string `json:"addr"` // the configured listen address (the gate's)
	TLS  bool   `json:"tls"`  // a TLS listener: the new process wraps it with its own certificates
	// Admin: the admin HTTP listener (both processes accept on it until the old one exits).
	Admin bool   `json:"admin,omitempty"`
	VIP   string `json:"vip"`
}

// Listeners is the old process's listening sockets.
type Listeners struct {
	Listeners []ListenerInfo `json:"listeners"`
}

// Accepting names (by index into Listeners) the listeners the new process accepts on.
type Accepting struct {
	Adopted []int `json:"adopted"`
}

// Credit is how many more client descriptors the receiver can take (RLIMIT_NOFILE).
type Credit struct {
	N int `json:"n"`
}

// Client is the state of an idle client connection that travels with it. Everything
// else about the connection is in the socket itself (unread bytes stay queued in it).
type Client struct {
	VIP    string `json:"vip"` // the endpoint it was accepted on
	RESP3  bool   `json:"resp3"`
	Authed bool   `json:"authed"`
	// AuthRequired: the old process needed authentication (Authed is then by AUTH).
	AuthRequired bool   `json:"auth_required"`
	User         string `json:"user,omitempty"` // as authenticated ("": never, auth not required)
	ReadOnly     bool   `json:"readonly,omitempty"`
	Name         string `json:"name,omitempty"`
	LibName      string `json:"lib_name,omitempty"`
	LibVer       string `json:"lib_ver,omitempty"`
	ReplyOff     bool   `json:"reply_off,omitempty"`
	Created      int64  `json:"created"` // UnixNano
}

// Clients is a batch of clients, one per descriptor, in order.
type Clients struct {
	Clients []Client `json:"clients"`
}

// Done ends the hand-over: the old process has no client left to pass.
type Done struct {
	Passed int    `json:"passed"`
	Kept   int    `json:"kept"` // clients with state that cannot move, finished by the old process
	Reason string `json:"reason,omitempty"`
}

// encode makes a frame: header, then the JSON payload of v.
func encode(t MsgType, v any, nfds int) ([]byte, error) {
	if nfds < 0 || nfds > MaxFDsPerMsg {
		return nil, fmt.Errorf("%w: %d", ErrTooMany, nfds)
	}
	p, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("handoff: encode: %w", err)
	}
	if len(p) > MaxPayload {
		return nil, fmt.Errorf("%w: payload of %d bytes", ErrBadFrame, len(p))
	}
	b := make([]byte, headerLen, headerLen+len(p))
	copy(b, magic[:])
	binary.BigEndian.PutUint16(b[4:], FrameVersion)
	b[6] = byte(t)
	b[7] = byte(nfds)
	binary.BigEndian.PutUint32(b[8:], uint32(len(p)))
	return append(b, p...), nil
}

// decodeHeader reads a frame header.
func decodeHeader(b []byte) (t MsgType, nfds, plen int, err error) {
	if len(b) < headerLen || [4]byte(b[:4]) != magic {
		return 0, 0, 0, fmt.Errorf("%w: no magic", ErrBadFrame)
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != FrameVersion {
		return 0, 0, 0, fmt.Errorf("%w: frame version %d", ErrBadFrame, v)
	}
	t, nfds, plen = MsgType(b[6]), int(b[7]), int(binary.BigEndian.Uint32(b[8:]))
	if nfds > MaxFDsPerMsg {
		return 0, 0, 0, fmt.Errorf("%w: %d", ErrTooMany, nfds)
	}
	if plen > MaxPayload {
		return 0, 0, 0, fmt.Errorf("%w: payload of %d bytes", ErrBadFrame, plen)
	}
	return t, nfds, plen, nil
}

// Batches splits n items into consecutive [from, to) ranges of at most max.
func Batches(n, max int) [][2]int {
	if max < 1 {
		max = 1
	}
	var out [][2]int
	for i := 0; i < n; i += max {
		out = append(out, [2]int{i, min(i+max, n)})
	}
	return out
}

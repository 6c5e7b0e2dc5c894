package handoff

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is one end of a hand-over connection (a unix stream socket).
type Conn struct {
	uc *net.UnixConn
	rc syscall.RawConn
}

// Msg is a received message: its type, JSON payload and the descriptors that came with
// it (close-on-exec, owned by the receiver).
type Msg struct {
	Type    MsgType
	Payload []byte
	FDs     []int
}

// Decode unmarshals the payload into v.
func (m *Msg) Decode(v any) error {
	if err := json.Unmarshal(m.Payload, v); err != nil {
		return fmt.Errorf("%w: message %d: %v", ErrBadFrame, m.Type, err)
	}
	return nil
}

// CloseFDs closes the message's descriptors (a message the receiver does not use).
func (m *Msg) CloseFDs() {
	for _, fd := range m.FDs {
		unix.Close(fd)
	}
	m.FDs = nil
}

// newConn wraps uc after checking that its peer runs as this process's user.
func newConn(uc *net.UnixConn) (*Conn, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, err
	}
	c := &Conn{uc: uc, rc: rc}
	if err := c.checkPeer(uint32(os.Geteuid())); err != nil {
		uc.Close()
		return nil, err
	}
	return c, nil
}

// checkPeer refuses a peer whose credentials (LOCAL_PEERCRED, SO_PEERCRED) are not uid.
func (c *Conn) checkPeer(uid uint32) error {
	var got uint32
	var gerr error
	if err := c.rc.Control(func(fd uintptr) { got, gerr = creds.peerUID(int(fd)) }); err != nil {
		return err
	}
	if gerr != nil {
		return fmt.Errorf("handoff: peer credentials: %w", gerr)
	}
	if got != uid {
		return fmt.Errorf("%w: uid %d, want %d", ErrPeerCreds, got, uid)
	}
	return nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.uc.Close() }

// SetDeadline bounds the next sends and receives.
func (c *Conn) SetDeadline(t time.Time) error { return c.uc.SetDeadline(t) }

// Send sends one message with v as its payload and fds attached (at most MaxFDsPerMsg).
// The caller keeps its descriptors (the receiver gets duplicates).
func (c *Conn) Send(t MsgType, v any, fds []int) error {
	b, err := encode(t, v, len(fds))
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	for len(b) > 0 {
		var n int
		var serr error
		werr := c.rc.Write(func(fd uintptr) bool {
			n, serr = unix.SendmsgN(int(fd), b, oob, nil, 0)
			return serr != unix.EAGAIN
		})
		if werr != nil {
			return fmt.Errorf("handoff: send: %w", werr)
		}
		if serr == unix.EINTR {
			continue
		}
		if serr != nil {
			return fmt.Errorf("handoff: send: %w", serr)
		}
		b, oob = b[n:], nil // the descriptors went with the first byte
	}
	return nil
}

// Recv receives one message. It reads exactly one frame (never into the next one, so
// that descriptors are attributed to their message), with MSG_CMSG_CLOEXEC: this process
// runs ifconfig, sysctl and pfctl concurrently, and a descriptor must not leak into them.
func (c *Conn) Recv() (*Msg, error) {
	var fds []int
	fail := func(err error) (*Msg, error) {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, err
	}
	hdr := make([]byte, headerLen)
	if err := c.readFull(hdr, &fds); err != nil {
		return fail(err)
	}
	t, nfds, plen, err := decodeHeader(hdr)
	if err != nil {
		return fail(err)
	}
	p := make([]byte, plen)
	if err := c.readFull(p, &fds); err != nil {
		return fail(err)
	}
	if len(fds) != nfds {
		return fail(fmt.Errorf("%w: %d received, %d announced", ErrFDMismatch, len(fds), nfds))
	}
	return &Msg{Type: t, Payload: p, FDs: fds}, nil
}

// oobSpace is room for the control message of one frame's descriptors.
var oobSpace = unix.CmsgSpace(4 * MaxFDsPerMsg)

func (c *Conn) readFull(b []byte, fds *[]int) error {
	oob := make([]byte, oobSpace)
	for len(b) > 0 {
		var n, oobn, flags int
		var rerr error
		err := c.rc.Read(func(fd uintptr) bool {
			n, oobn, flags, _, rerr = unix.Recvmsg(int(fd), b, oob, recvFlags)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			return fmt.Errorf("handoff: receive: %w", err)
		}
		if rerr == unix.EINTR {
			continue
		}
		if rerr != nil {
			return fmt.Errorf("handoff: receive: %w", rerr)
		}
		if oobn > 0 {
			got, perr := parseRights(oob[:oobn])
			*fds = append(*fds, got...)
			if perr != nil {
				return perr
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return fmt.Errorf("%w: control message truncated", ErrFDMismatch)
		}
		if n == 0 {
			return fmt.Errorf("handoff: receive: %w", errors.New("peer closed the connection"))
		}
		b = b[n:]
	}
	return nil
}

// parseRights returns the descriptors of SCM_RIGHTS control messages.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("%w: control message: %v", ErrBadFrame, err)
	}
	var fds []int
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			return fds, fmt.Errorf("%w: rights: %v", ErrBadFrame, err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

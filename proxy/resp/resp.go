package resp

import (
	"bytes"
	"errors"
	"io"
	"strconv"
)

// MaxReplyDepth is the nesting the RESP3 re-encoding parses (proxy/resp3.go; a deeper reply
// is passed on as the node sent it). Framing has no depth limit (FrameValue).
const MaxReplyDepth = 64

var ErrBadReply = errors.New("malformed reply from cluster node")

// Reader reads RESP replies from a blocking connection (dedicated, subscription and
// control connections) and frames them with FrameReply, the event loops' framer. Each
// reply is returned in a fresh slice that holds its complete wire form. Its buffer grows
// with the bytes actually read, so a (broken) header announcing a huge bulk allocates
// nothing before that bulk arrives.
type Reader struct {
	rd   io.Reader
	buf  []byte // buf[off:] is read and not yet returned
	off  int
	need int // FrameReply's need for buf[off:]: fewer bytes cannot frame a reply
}

func NewReader(rd io.Reader) *Reader {
	return &Reader{rd: rd}
}

// next reads one complete reply; io.EOF when the stream ends between replies.
func (r *Reader) Next() ([]byte, error) {
	for {
		if have := len(r.buf) - r.off; have > 0 && have >= r.need {
			n, need, err := FrameReply(r.buf[r.off:])
			if err != nil {
				return nil, err
			}
			if n > 0 {
				rep := append([]byte(nil), r.buf[r.off:r.off+n]...)
				r.off += n
				r.need = 0
				if r.off == len(r.buf) {
					r.off, r.buf = 0, r.buf[:0]
					if cap(r.buf) > 64<<10 {
						r.buf = nil // a large reply's buffer is not kept
					}
				}
				return rep, nil
			}
			r.need = need
		}
		if r.off > 0 {
			r.buf = r.buf[:copy(r.buf, r.buf[r.off:])]
			r.off = 0
		}
		// Room for what is still needed, read in chunks of at most 1 MiB.
		want := min(max(r.need-len(r.buf), 4096), 1<<20)
		if cap(r.buf)-len(r.buf) < want {
			nb := make([]byte, len(r.buf), len(r.buf)+want)
			copy(nb, r.buf)
			r.buf = nb
		}
		n, err := r.rd.Read(r.buf[len(r.buf):cap(r.buf)])
		r.buf = r.buf[:len(r.buf)+n]
		if err != nil && n == 0 {
			if err == io.EOF && len(r.buf) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// AppendCommand encodes args as a RESP array of bulk strings.
func AppendCommand(dst []byte, args ...[]byte) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, '\r', '\n')
	for _, a := range args {
		dst = AppendBulk(dst, a)
	}
	return dst
}

func AppendBulk(dst, b []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

func AppendBulkString(dst []byte, s string) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

func AppendInt(dst []byte, n int64) []byte {
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\r', '\n')
}

func AppendArrayHeader(dst []byte, n int) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// ErrorReply returns the wire form of a RESP error. msg must not contain CR or LF; they are
// replaced with spaces if it does.
func ErrorReply(msg string) []byte {
	b := make([]byte, 0, len(msg)+3)
	b = append(b, '-')
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return append(b, '\r', '\n')
}

// Redirect describes a cluster redirection or transient error carried by a reply.
type Redirect int

const (
	RedirNone Redirect = iota
	RedirMoved
	RedirAsk
	RedirTryAgain
	RedirClusterDown
)

// RedirectKind classifies an error reply by its prefix, without allocating: the event
// loops call it on every error reply, and ParseRedirect builds on it.
func RedirectKind(reply []byte) Redirect {
	if len(reply) < 5 || reply[0] != '-' {
		return RedirNone
	}
	switch {
	case bytes.HasPrefix(reply, []byte("-MOVED ")):
		return RedirMoved
	case bytes.HasPrefix(reply, []byte("-ASK ")):
		return RedirAsk
	case bytes.HasPrefix(reply, []byte("-TRYAGAIN")):
		return RedirTryAgain
	case bytes.HasPrefix(reply, []byte("-CLUSTERDOWN")):
		return RedirClusterDown
	}
	return RedirNone
}

// ParseRedirect reports what kind of redirection reply is, and for MOVED/ASK the slot and
// target address (a malformed MOVED/ASK is no redirection).
func ParseRedirect(reply []byte) (kind Redirect, slot int, addr string) {
	kind = RedirectKind(reply)
	if kind != RedirMoved && kind != RedirAsk {
		return kind, 0, ""
	}
	f := bytes.Fields(reply[1:])
	if len(f) != 3 {
		return RedirNone, 0, ""
	}
	s, err := strconv.Atoi(string(f[1]))
	if err != nil || s < 0 || s >= numSlots {
		return RedirNone, 0, ""
	}
	a := string(f[2])
	if a[0] == ':' {
		// Redis 7 may omit the host when it is unknown: "MOVED 3999 :6381". The caller
		// resolves it against the node that sent the reply.
		a = "?" + a
	}
	return kind, s, a
}

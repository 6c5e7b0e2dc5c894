package proxy

import (
	"bytes"
	"errors"
	"io"
	"strconv"
)

// maxReplyDepth bounds nesting of aggregate replies from a backend.
const maxReplyDepth = 64

var errBadReply = errors.New("malformed reply from cluster node")

// replyReader reads RESP replies from a blocking connection (dedicated, subscription and
// control connections) and frames them with frameReply, the event loops' framer. Each
// reply is returned in a fresh slice that holds its complete wire form. Its buffer grows
// with the bytes actually read, so a (broken) header announcing a huge bulk allocates
// nothing before that bulk arrives.
type replyReader struct {
	rd   io.Reader
	buf  []byte // buf[off:] is read and not yet returned
	off  int
	need int // frameReply's need for buf[off:]: fewer bytes cannot frame a reply
}

func newReplyReader(rd io.Reader) *replyReader {
	return &replyReader{rd: rd}
}

// next reads one complete reply; io.EOF when the stream ends between replies.
func (r *replyReader) next() ([]byte, error) {
	for {
		if have := len(r.buf) - r.off; have > 0 && have >= r.need {
			n, need, err := frameReply(r.buf[r.off:])
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

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, 2*cap(b)+n)
	copy(nb, b)
	return nb
}

// appendCommand encodes args as a RESP array of bulk strings.
func appendCommand(dst []byte, args ...[]byte) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, '\r', '\n')
	for _, a := range args {
		dst = appendBulk(dst, a)
	}
	return dst
}

func appendBulk(dst, b []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

func appendBulkString(dst []byte, s string) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

func appendInt(dst []byte, n int64) []byte {
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\r', '\n')
}

func appendArrayHeader(dst []byte, n int) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// errorReply returns the wire form of a RESP error. msg must not contain CR or LF; they are
// replaced with spaces if it does.
func errorReply(msg string) []byte {
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

var (
	replyOK     = []byte("+OK\r\n")
	replyPong   = []byte("+PONG\r\n")
	replyNil    = []byte("$-1\r\n")
	replyQueued = []byte("+QUEUED\r\n")
)

// redirect describes a cluster redirection or transient error carried by a reply.
type redirect int

const (
	redirNone redirect = iota
	redirMoved
	redirAsk
	redirTryAgain
	redirClusterDown
)

// redirectKind classifies an error reply by its prefix, without allocating: the event
// loops call it on every error reply, and parseRedirect builds on it.
func redirectKind(reply []byte) redirect {
	if len(reply) < 5 || reply[0] != '-' {
		return redirNone
	}
	switch {
	case bytes.HasPrefix(reply, []byte("-MOVED ")):
		return redirMoved
	case bytes.HasPrefix(reply, []byte("-ASK ")):
		return redirAsk
	case bytes.HasPrefix(reply, []byte("-TRYAGAIN")):
		return redirTryAgain
	case bytes.HasPrefix(reply, []byte("-CLUSTERDOWN")):
		return redirClusterDown
	}
	return redirNone
}

// parseRedirect reports what kind of redirection reply is, and for MOVED/ASK the slot and
// target address (a malformed MOVED/ASK is no redirection).
func parseRedirect(reply []byte) (kind redirect, slot int, addr string) {
	kind = redirectKind(reply)
	if kind != redirMoved && kind != redirAsk {
		return kind, 0, ""
	}
	f := bytes.Fields(reply[1:])
	if len(f) != 3 {
		return redirNone, 0, ""
	}
	s, err := strconv.Atoi(string(f[1]))
	if err != nil || s < 0 || s >= NumSlots {
		return redirNone, 0, ""
	}
	a := string(f[2])
	if a[0] == ':' {
		// Redis 7 may omit the host when it is unknown: "MOVED 3999 :6381". The caller
		// resolves it against the node that sent the reply.
		a = "?" + a
	}
	return kind, s, a
}

package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// maxReplyDepth bounds nesting of aggregate replies from a backend.
const maxReplyDepth = 64

var errBadReply = errors.New("malformed reply from cluster node")

// replyReader frames RESP replies from a backend connection. Each reply is read exactly once,
// incrementally, into a fresh byte slice that holds its complete wire form.
type replyReader struct {
	br       *bufio.Reader
	maxBulk  int64
	maxElems int64
}

func newReplyReader(br *bufio.Reader) *replyReader {
	return &replyReader{br: br, maxBulk: 1 << 30, maxElems: 1 << 28}
}

// next reads one complete reply.
func (r *replyReader) next() ([]byte, error) {
	return r.value(nil, 0)
}

func (r *replyReader) line(dst []byte) ([]byte, []byte, error) {
	start := len(dst)
	for {
		chunk, err := r.br.ReadSlice('\n')
		dst = append(dst, chunk...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			return dst, nil, err
		}
		if len(dst)-start > 64<<10 {
			return dst, nil, fmt.Errorf("%w: line too long", errBadReply)
		}
	}
	l := dst[start:]
	if len(l) < 3 || l[len(l)-2] != '\r' {
		return dst, nil, fmt.Errorf("%w: %q", errBadReply, l)
	}
	return dst, l[:len(l)-2], nil
}

func (r *replyReader) value(dst []byte, depth int) ([]byte, error) {
	if depth > maxReplyDepth {
		return dst, fmt.Errorf("%w: nested too deep", errBadReply)
	}
	dst, l, err := r.line(dst)
	if err != nil {
		return dst, err
	}
	switch l[0] {
	case '+', '-', ':', '_', ',', '#', '(':
		return dst, nil
	case '$', '=', '!':
		n, err := strconv.ParseInt(string(l[1:]), 10, 64)
		if err != nil || n < -1 || n > r.maxBulk {
			return dst, fmt.Errorf("%w: bulk length %q", errBadReply, l)
		}
		if n < 0 {
			return dst, nil
		}
		// Grow with the bytes actually read, so a (broken) header announcing a huge bulk
		// does not allocate it before a single byte of it arrived.
		for need := int(n) + 2; need > 0; {
			chunk := min(need, 1<<20)
			dst = grow(dst, chunk)
			if _, err := io.ReadFull(r.br, dst[len(dst)-chunk:]); err != nil {
				return dst, err
			}
			need -= chunk
		}
		if dst[len(dst)-2] != '\r' || dst[len(dst)-1] != '\n' {
			return dst, fmt.Errorf("%w: bulk not terminated", errBadReply)
		}
		return dst, nil
	case '*', '%', '~', '>', '|':
		n, err := strconv.ParseInt(string(l[1:]), 10, 64)
		if err != nil || n < -1 || n > r.maxElems {
			return dst, fmt.Errorf("%w: aggregate length %q", errBadReply, l)
		}
		if l[0] == '%' || l[0] == '|' {
			n *= 2
		}
		for i := int64(0); i < n; i++ {
			if dst, err = r.value(dst, depth+1); err != nil {
				return dst, err
			}
		}
		return dst, nil
	}
	return dst, fmt.Errorf("%w: unknown type %q", errBadReply, l[0])
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

// parseRedirect reports what kind of redirection reply is, and for MOVED/ASK the slot and
// target address.
func parseRedirect(reply []byte) (kind redirect, slot int, addr string) {
	if len(reply) < 5 || reply[0] != '-' {
		return redirNone, 0, ""
	}
	switch {
	case bytes.HasPrefix(reply, []byte("-MOVED ")):
		kind = redirMoved
	case bytes.HasPrefix(reply, []byte("-ASK ")):
		kind = redirAsk
	case bytes.HasPrefix(reply, []byte("-TRYAGAIN")):
		return redirTryAgain, 0, ""
	case bytes.HasPrefix(reply, []byte("-CLUSTERDOWN")):
		return redirClusterDown, 0, ""
	default:
		return redirNone, 0, ""
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

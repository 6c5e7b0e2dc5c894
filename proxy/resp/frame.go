package resp

import (
	"bytes"
	"fmt"
)

// FrameReply returns the length of the complete RESP reply at the start of b. When b holds
// only part of it, n is 0 and need is how many bytes b must hold at least before another
// try can succeed (so a large bulk is not rescanned for every read). A malformed reply is
// an error (ErrBadReply): the connection it came from cannot be trusted any more.
func FrameReply(b []byte) (n, need int, err error) {
	return FrameValue(b, 0)
}

// FrameValue frames the value starting at b[off:]; end and need are absolute offsets. It
// counts the elements still to come instead of recursing, so nesting is not limited: a
// node legitimately nests replies thousands deep (a script returning a self-referencing
// table reaches Lua's stack limit, about 8000 levels); what clients send is limited by
// the request Scanner.
func FrameValue(b []byte, off int) (end, need int, err error) {
	left := int64(1) // values still to frame
	pos := off
	for left > 0 {
		left--
		if pos >= len(b) {
			return 0, pos + 3, nil
		}
		// The header line.
		i := pos + 1
		for ; i < len(b) && b[i] != '\n'; i++ {
			if i-pos > 64<<10 {
				return 0, 0, fmt.Errorf("%w: line too long", ErrBadReply)
			}
		}
		if i == len(b) {
			return 0, len(b) + 1, nil
		}
		if i-pos < 2 || b[i-1] != '\r' {
			return 0, 0, fmt.Errorf("%w: %q", ErrBadReply, b[pos:i+1])
		}
		line := b[pos+1 : i-1]
		next := i + 1
		switch b[pos] {
		case '+', '-', ':', '_', ',', '#', '(':
			pos = next
		case '$', '=', '!':
			v, ok := ParseLen(line)
			if !ok || v < -1 || v > 1<<30 {
				return 0, 0, fmt.Errorf("%w: bulk length %q", ErrBadReply, line)
			}
			if v < 0 {
				pos = next
				continue
			}
			end := next + int(v) + 2
			if end > len(b) {
				return 0, end, nil
			}
			if b[end-2] != '\r' || b[end-1] != '\n' {
				return 0, 0, fmt.Errorf("%w: bulk not terminated", ErrBadReply)
			}
			pos = end
		case '*', '%', '~', '>', '|':
			v, ok := ParseLen(line)
			if !ok || v < -1 || v > 1<<28 {
				return 0, 0, fmt.Errorf("%w: aggregate length %q", ErrBadReply, line)
			}
			if b[pos] == '%' || b[pos] == '|' {
				v *= 2
			}
			if v > 0 {
				left += v
			}
			pos = next
		default:
			return 0, 0, fmt.Errorf("%w: unknown type %q", ErrBadReply, b[pos])
		}
	}
	return pos, 0, nil
}

// ParseLen parses a RESP length ("-1", "0", "123") without allocating.
func ParseLen(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

// SplitArray returns the raw elements of an array reply, each framed by FrameValue (nil
// and true for a null array).
func SplitArray(rep []byte) ([][]byte, bool) {
	if len(rep) < 4 || rep[0] != '*' {
		return nil, false
	}
	i := bytes.IndexByte(rep, '\n')
	n, ok := ParseLen(rep[1 : i-1])
	if !ok || n < 0 {
		return nil, ok && n == -1
	}
	out := make([][]byte, 0, min(n, 1024))
	pos := i + 1
	for k := int64(0); k < n; k++ {
		end, _, err := FrameValue(rep, pos)
		if err != nil || end == 0 {
			return nil, false
		}
		out = append(out, rep[pos:end])
		pos = end
	}
	return out, pos == len(rep)
}

package proxy

import "fmt"

// frameReply returns the length of the complete RESP reply at the start of b. When b holds
// only part of it, n is 0 and need is how many bytes b must hold at least before another
// try can succeed (so a large bulk is not rescanned for every read). A malformed reply is
// an error (errBadReply): the connection it came from cannot be trusted any more.
func frameReply(b []byte) (n, need int, err error) {
	return frameValue(b, 0, 0)
}

// frameValue frames the value starting at b[off:]; n and need are absolute offsets.
func frameValue(b []byte, off, depth int) (end, need int, err error) {
	if depth > maxReplyDepth {
		return 0, 0, fmt.Errorf("%w: nested too deep", errBadReply)
	}
	if off >= len(b) {
		return 0, off + 3, nil
	}
	// The header line.
	i := off + 1
	for ; i < len(b) && b[i] != '\n'; i++ {
		if i-off > 64<<10 {
			return 0, 0, fmt.Errorf("%w: line too long", errBadReply)
		}
	}
	if i == len(b) {
		return 0, len(b) + 1, nil
	}
	if i-off < 2 || b[i-1] != '\r' {
		return 0, 0, fmt.Errorf("%w: %q", errBadReply, b[off:i+1])
	}
	line := b[off+1 : i-1]
	next := i + 1
	switch b[off] {
	case '+', '-', ':', '_', ',', '#', '(':
		return next, 0, nil
	case '$', '=', '!':
		v, ok := parseLen(line)
		if !ok || v < -1 || v > 1<<30 {
			return 0, 0, fmt.Errorf("%w: bulk length %q", errBadReply, line)
		}
		if v < 0 {
			return next, 0, nil
		}
		end := next + int(v) + 2
		if end > len(b) {
			return 0, end, nil
		}
		if b[end-2] != '\r' || b[end-1] != '\n' {
			return 0, 0, fmt.Errorf("%w: bulk not terminated", errBadReply)
		}
		return end, 0, nil
	case '*', '%', '~', '>', '|':
		v, ok := parseLen(line)
		if !ok || v < -1 || v > 1<<28 {
			return 0, 0, fmt.Errorf("%w: aggregate length %q", errBadReply, line)
		}
		if b[off] == '%' || b[off] == '|' {
			v *= 2
		}
		pos := next
		for k := int64(0); k < v; k++ {
			e, need, err := frameValue(b, pos, depth+1)
			if e == 0 {
				return 0, need, err
			}
			pos = e
		}
		return pos, 0, nil
	}
	return 0, 0, fmt.Errorf("%w: unknown type %q", errBadReply, b[off])
}

// parseLen parses a RESP length ("-1", "0", "123") without allocating.
func parseLen(b []byte) (int64, bool) {
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

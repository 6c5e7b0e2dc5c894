package resp

import (
	"errors"
)

// ProtoError is a client protocol violation; its text follows "-ERR " on the wire.
type ProtoError struct{ msg string }

func (e *ProtoError) Error() string { return "Protocol error: " + e.msg }

// Scanner checks the RESP stream from a client as it is read, before it is parsed, and
// fails the stream as soon as a limit is exceeded: a bulk length over proto-max-bulk-len,
// more arguments than proto-max-multibulk-len, an inline line over proto-inline-max-size
// or a command over client-query-buffer-limit. Bytes of complete commands before the
// violation are passed, so they are still answered. It is a state machine over the bytes
// of each read: a command's cost is linear in its size.
type Scanner struct {
	maxBulk   int64
	maxArgs   int64
	maxInline int
	maxQuery  int64
	unauth    bool // the limits are the unauthenticated ones: errors say so

	err      error
	state    uint8
	hdr      [24]byte
	hdrLen   int
	args     int64 // bulk arguments left in the current command
	bulkLeft int64 // bytes left in the current bulk, CRLF included
	cmdBytes int64
	inline   int
	// lastEnd is where the last command completed in the bytes of the last scan (the
	// offset after its last byte), -1 if none did: the bytes before it can be parsed
	// (readable).
	lastEnd int
}

const (
	gStart uint8 = iota
	gArrayHdr
	gBulkStart
	gBulkHdr
	gBulkBody
	gInline
)

func (g *Scanner) fail(msg string) { g.err = &ProtoError{msg} }

// scan advances the state machine over b and returns how many bytes are valid. An inline
// command is always cut out of the stream on its own (scan stops before and after it), so
// that a malformed inline command, which the command reader rejects with everything read
// together with it, never takes earlier commands with it.
func (g *Scanner) Scan(b []byte) int {
	i := 0
	g.lastEnd = -1
	for i < len(b) {
		if g.state == gBulkBody {
			if g.bulkLeft > 2 { // payload
				k := min(int64(len(b)-i), g.bulkLeft-2)
				g.bulkLeft -= k
				i += int(k)
				continue
			}
			if c := b[i]; g.bulkLeft == 2 && c != '\r' || g.bulkLeft == 1 && c != '\n' {
				g.fail("expected CRLF after bulk string")
				return i
			}
			i++
			g.bulkLeft--
			if g.bulkLeft == 0 {
				g.args--
				g.state = gBulkStart
				if g.args == 0 {
					g.state = gStart
					g.cmdBytes = 0
					g.lastEnd = i
				}
			}
			continue
		}
		c := b[i]
		i++
		g.cmdBytes++
		if g.cmdBytes > g.maxQuery {
			g.fail("command exceeds client-query-buffer-limit")
			return i - 1
		}
		switch g.state {
		case gStart:
			g.cmdBytes = 1
			if c == '*' {
				g.state, g.hdrLen = gArrayHdr, 0
			} else if i > 1 {
				return i - 1 // an inline command starts: cut before it
			} else {
				g.state, g.inline = gInline, 1
				if c == '\n' {
					g.state = gStart
					g.lastEnd = i
				}
			}
		case gInline:
			if c == '\n' {
				g.state = gStart
				g.lastEnd = i
				return i // cut after the inline command
			}
			g.inline++
			if g.inline > g.maxInline {
				g.fail("too big inline request")
				return i - 1
			}
		case gArrayHdr, gBulkHdr:
			if c != '\n' {
				if g.hdrLen == len(g.hdr) {
					if g.state == gArrayHdr {
						g.fail("invalid multibulk length")
					} else {
						g.fail("invalid bulk length")
					}
					return i - 1
				}
				g.hdr[g.hdrLen] = c
				g.hdrLen++
				continue
			}
			h := g.hdr[:g.hdrLen]
			if len(h) == 0 || h[len(h)-1] != '\r' {
				g.fail("invalid multibulk length")
				return i - 1
			}
			v, ok := ParseLen(h[:len(h)-1])
			if g.state == gArrayHdr {
				if ok && v > g.maxArgs && g.unauth {
					g.fail("unauthenticated multibulk length")
					return i - 1
				}
				if !ok || v > g.maxArgs {
					g.fail("invalid multibulk length")
					return i - 1
				}
				if v <= 0 { // as Redis: an empty command, skipped
					g.state = gStart
					g.lastEnd = i
					continue
				}
				g.args, g.state = v, gBulkStart
			} else {
				if ok && v > g.maxBulk && g.unauth {
					g.fail("unauthenticated bulk length")
					return i - 1
				}
				if !ok || v < 0 || v > g.maxBulk {
					g.fail("invalid bulk length")
					return i - 1
				}
				g.bulkLeft, g.state = v+2, gBulkBody
				if g.cmdBytes+v > g.maxQuery {
					g.fail("command exceeds client-query-buffer-limit")
					return i - 1
				}
				g.cmdBytes += v + 2
			}
		case gBulkStart:
			if c != '$' {
				g.fail("expected '$', got '" + string(rune(c)) + "'")
				return i - 1
			}
			g.state, g.hdrLen = gBulkHdr, 0
		}
	}
	return i
}

func IsProtoError(err error) (string, bool) {
	var pe *ProtoError
	if errors.As(err, &pe) {
		return pe.Error(), true
	}
	if err != nil && len(err.Error()) > 15 && err.Error()[:15] == "Protocol error:" {
		return err.Error(), true
	}
	return "", false
}

// Limits are a Scanner's request limits.
type Limits struct {
	MaxBulk   int64 // proto-max-bulk-len: the longest bulk argument
	MaxArgs   int64 // proto-max-multibulk-len: the most arguments of a command
	MaxInline int   // proto-inline-max-size: the longest inline command
	MaxQuery  int64 // client-query-buffer-limit: the largest command
	// Unauthenticated marks the limits of a client that has not authenticated: a command
	// over them is refused with "unauthenticated bulk length" (or multibulk length).
	Unauthenticated bool
}

// NewScanner returns a Scanner with limits l.
func NewScanner(l Limits) Scanner {
	var g Scanner
	g.SetLimits(l)
	return g
}

// SetLimits sets the limits checked from the next byte on.
func (g *Scanner) SetLimits(l Limits) {
	g.maxBulk, g.maxArgs, g.maxInline, g.maxQuery, g.unauth = l.MaxBulk, l.MaxArgs, l.MaxInline, l.MaxQuery, l.Unauthenticated
}

// Err is the limit or protocol violation that stopped the stream (nil: none yet).
func (g *Scanner) Err() error { return g.err }

// LastEnd is where the last command completed in the bytes of the last Scan (the offset
// after its last byte), -1 if none did: the bytes before it can be parsed.
func (g *Scanner) LastEnd() int { return g.lastEnd }

package proxy

import (
	"bytes"
	"sync/atomic"

	"github.com/tidwall/redcon"
)

// A command is parsed once, when it is whole. The scanner (guard.go) already walks every
// byte as it is read, keeping its place between reads, and knows where each command ends:
// until it has seen the end of one, the bytes read are only kept, never handed to the
// parser. Parsing an unfinished command from its first byte on every read made its cost
// quadratic in its size (3.4 MiB sent in small pieces cost seconds of CPU and stalled the
// loop's other clients). Both request paths follow this: the event loops skip parsing a
// read that completed nothing (lclient.readable), the goroutine sessions read through
// frameReader. parseWork counts the bytes handed to the parser, so a test can check that
// the cost stays linear.

// frameReader reads whole commands for a goroutine session: it reads through the guard into
// its buffer and parses only the part the guard's scanner has seen complete.
type frameReader struct {
	g        *guard
	work     *atomic.Int64 // the server's parse work counter
	buf      []byte
	start    int // buf[start:end] is read and not yet returned
	end      int
	complete int   // buf[start:complete] holds whole commands
	err      error // a read or parse error to return after the commands before it
}

const frameReaderSize = 4096

func newFrameReader(g *guard, work *atomic.Int64) *frameReader {
	return &frameReader{g: g, work: work, buf: make([]byte, frameReaderSize)}
}

// Buffered is the number of bytes read and not yet returned as commands.
func (fr *frameReader) Buffered() int { return fr.end - fr.start }

// ReadCommands returns the next complete commands, reading as needed. Their arguments
// and raw bytes are their own (not the reader's buffer).
func (fr *frameReader) ReadCommands() ([]redcon.Command, error) {
	for {
		if fr.complete > fr.start {
			return fr.parse()
		}
		if err := fr.err; err != nil {
			fr.err = nil
			return nil, err
		}
		fr.makeRoom()
		n, err := fr.g.Read(fr.buf[fr.end:])
		if n > 0 {
			if e := fr.g.lastEnd; e >= 0 {
				fr.complete = fr.end + e
			}
			fr.end += n
		}
		if err != nil {
			fr.err = err
			if fr.complete <= fr.start {
				fr.err = nil // a deadline may pass and reading go on
				return nil, err
			}
		}
	}
}

// makeRoom makes space after end: the unread rest moves to the front, or the buffer
// doubles when a command fills it.
func (fr *frameReader) makeRoom() {
	if fr.start == fr.end {
		fr.start, fr.end, fr.complete = 0, 0, 0
		if len(fr.buf) > 64<<10 {
			fr.buf = make([]byte, frameReaderSize) // a large command is gone
		}
	}
	if fr.end < len(fr.buf) {
		return
	}
	if fr.start > 0 && fr.start >= len(fr.buf)/2 {
		n := copy(fr.buf, fr.buf[fr.start:fr.end])
		fr.complete -= fr.start
		fr.start, fr.end = 0, n
		return
	}
	nb := make([]byte, 2*len(fr.buf))
	n := copy(nb, fr.buf[fr.start:fr.end])
	fr.buf, fr.complete, fr.start, fr.end = nb, fr.complete-fr.start, 0, n
}

// parse returns the whole commands in buf[start:complete]; a malformed one ends them and
// its error is returned by the next call.
func (fr *frameReader) parse() ([]redcon.Command, error) {
	region := fr.buf[fr.start:fr.complete]
	fr.work.Add(int64(len(region)))
	var cmds []redcon.Command
	for len(region) > 0 {
		if region[0] == '*' {
			complete, args, _, left, err := redcon.ReadNextCommand(region, nil)
			if err == nil && !complete {
				err = &protoError{"unbalanced command"} // cannot happen: the scanner saw its end
			}
			if err == nil && len(args) == 0 { // "*0": refused as the command reader always did
				err = &protoError{"invalid multibulk length"}
			}
			if err != nil {
				return fr.fail(cmds, err)
			}
			raw := append([]byte(nil), region[:len(region)-len(left)]...)
			for i, a := range args { // the same arguments, in raw: a is region[off:off+len(a)]
				off := cap(region) - cap(a)
				args[i] = raw[off : off+len(a) : off+len(a)]
			}
			cmds = append(cmds, redcon.Command{Raw: raw, Args: args})
			region = left
			continue
		}
		i := bytes.IndexByte(region, '\n')
		if i < 0 { // cannot happen: the scanner cuts inline commands at their newline
			break
		}
		line := region[:i+1]
		region = region[i+1:]
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		c, err := redcon.Parse(line)
		if err != nil {
			return fr.fail(cmds, err)
		}
		cmds = append(cmds, c)
	}
	fr.start = fr.complete - len(region)
	return cmds, nil
}

// fail drops what is buffered and returns the commands before a malformed one; err comes
// with the next call (at once if there are none).
func (fr *frameReader) fail(cmds []redcon.Command, err error) ([]redcon.Command, error) {
	fr.start, fr.complete, fr.end = 0, 0, 0
	if len(cmds) == 0 {
		return nil, err
	}
	fr.err = err
	return cmds, nil
}

// keepPartial keeps bytes read that completed no command: only their place in the
// unfinished command is remembered (by the scanner); they are parsed once it is whole.
func (c *lclient) keepPartial(data []byte) {
	c.in = append(c.in, data...) // owned: data may be the loop's read buffer
	c.updateInterest()
}

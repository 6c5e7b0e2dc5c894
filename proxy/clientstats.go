package proxy

import (
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// The CLIENT LIST / CLIENT INFO fields that only a client's event loop knows (its buffers,
// its descriptor, its last command): read on the loop when asked (loop.call, one call per
// loop for all its clients), so the request path keeps no counters for them.

// clientStats are one client's buffer fields, in Redis 7.0's meaning where the proxy has
// the same thing: qbuf the bytes read and not yet parsed, qbuf-free the room left in that
// buffer; obl the reply bytes waiting to be written, oll the completed replies held for an
// earlier one, omem everything held for the client (obl, held replies, and what its slow
// path holds: outbuf.go); tot-mem omem plus its buffers' capacity and the connection's
// own state.
type clientStats struct {
	ok                     bool
	fd                     int
	qbuf, qbufFree, rbs    int
	obl, oll, omem, totMem int64
	events, cmd            string
	multiMem               int64
}

// clientStatsTimeout bounds how long CLIENT LIST waits for a busy loop.
const clientStatsTimeout = time.Second

// perClientOverhead is what a connection costs besides its buffers.
const perClientOverhead = int64(unsafe.Sizeof(lclient{}) + unsafe.Sizeof(session{}) + unsafe.Sizeof(loopConn{}))

// loopStats reads the loop fields of the given sessions' clients.
func loopStats(sessions []*session) map[*session]clientStats {
	byLoop := map[*loop][]*lclient{}
	for _, ss := range sessions {
		if lc, ok := ss.conn.(*loopConn); ok && lc.c != nil {
			byLoop[lc.c.l] = append(byLoop[lc.c.l], lc.c)
		}
	}
	out := make(map[*session]clientStats, len(sessions))
	for l, cs := range byLoop {
		got := make([]clientStats, len(cs))
		if !l.call(func() {
			for i, c := range cs {
				got[i] = c.stats()
			}
		}, clientStatsTimeout) {
			continue
		}
		for i, c := range cs {
			out[c.ss] = got[i]
		}
	}
	return out
}

// stats reads the client's fields (on its loop).
func (c *lclient) stats() clientStats {
	st := clientStats{ok: true, fd: c.fd, qbuf: len(c.in), qbufFree: cap(c.in) - len(c.in), rbs: cap(c.in), cmd: c.cmd}
	if c.closed {
		st.fd = -1
	}
	st.obl = int64(c.outLen())
	for i := 0; i < c.fifo.n; i++ {
		if r := c.fifo.buf[(c.fifo.head+i)&(len(c.fifo.buf)-1)]; r.done {
			st.oll++
		}
	}
	st.omem = c.pendingOut() + c.ss.out.bytes.Load()
	st.totMem = st.omem + int64(cap(c.in)) + int64(cap(c.out)-len(c.out)) + perClientOverhead
	if c.reading {
		st.events += "r"
	}
	if c.wantWrite {
		st.events += "w"
	}
	return st
}

// fullCommandName is CLIENT LIST's cmd: the command's lower-case name, with the
// subcommand of a container command ("client|info").
func (s *Server) fullCommandName(args [][]byte) string {
	if len(args) == 0 {
		return ""
	}
	name := lowerName(args[0])
	tab := s.cl.cmds.Load()
	if _, proxyOwn := commands[name]; tab.Cmds[name] == nil && !proxyOwn {
		return "NULL" // as Redis for a command it does not know
	}
	if len(args) > 1 {
		if sub := name + "|" + strings.ToLower(string(args[1])); hasSub(tab.Sub, sub) {
			return sub
		}
	}
	return name
}

// appendStatsFields appends the buffer fields of a CLIENT LIST line, in Redis 7.0's order,
// from qbuf to events.
func appendStatsFields(b []byte, st clientStats) []byte {
	b = append(b, " qbuf="...)
	b = strconv.AppendInt(b, int64(st.qbuf), 10)
	b = append(b, " qbuf-free="...)
	b = strconv.AppendInt(b, int64(st.qbufFree), 10)
	b = append(b, " argv-mem=0 multi-mem="...)
	b = strconv.AppendInt(b, st.multiMem, 10)
	b = append(b, " rbs="...)
	b = strconv.AppendInt(b, int64(st.rbs), 10)
	b = append(b, " rbp="...)
	b = strconv.AppendInt(b, int64(st.rbs), 10)
	b = append(b, " obl="...)
	b = strconv.AppendInt(b, st.obl, 10)
	b = append(b, " oll="...)
	b = strconv.AppendInt(b, st.oll, 10)
	b = append(b, " omem="...)
	b = strconv.AppendInt(b, st.omem, 10)
	b = append(b, " tot-mem="...)
	b = strconv.AppendInt(b, st.totMem, 10)
	b = append(b, " events="...)
	b = append(b, st.events...)
	return b
}

func hasSub(subs map[string]command.Flags, name string) bool {
	_, ok := subs[name]
	return ok
}

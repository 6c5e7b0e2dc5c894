package proxy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// CLIENT LIST / INFO / KILL over the proxy's own clients, with Redis's fields and filters.

// clientUser returns the user the session authenticated as.
func (ss *session) clientUser() string {
	ss.csMu.Lock()
	defer ss.csMu.Unlock()
	if ss.cs.user == "" {
		return "default"
	}
	return ss.cs.user
}

// clientType is what CLIENT LIST/KILL TYPE match: pubsub while subscribed, else normal.
func (ss *session) clientType() string {
	if ss.inPubSub.Load() {
		return "pubsub"
	}
	return "normal"
}

// clientLine renders one CLIENT LIST line. self is the calling session, whose
// subscription and transaction state may be read (that of others is another goroutine's).
func (ss *session) clientLine(self bool, st clientStats) string {
	flags := ""
	if ss.inPubSub.Load() {
		flags += "P"
	}
	if ss.blocking.Load() {
		flags += "b"
	}
	if ss.monitor.Load() {
		flags += "O"
	}
	sub, psub, ssub, multi := 0, 0, 0, -1
	if self {
		if ss.tx.inMulti {
			flags += "x"
			multi = len(ss.tx.queued)
			for _, q := range ss.tx.queued {
				for _, a := range q {
					st.multiMem += int64(len(a))
				}
			}
		}
		if ps := ss.ps; ps != nil {
			ps.mu.Lock()
			sub, psub, ssub = len(ps.channels), len(ps.patterns), len(ps.schannels)
			ps.mu.Unlock()
		}
	}
	if flags == "" {
		flags = "N"
	}
	user := ss.clientUser()
	ss.csMu.Lock()
	defer ss.csMu.Unlock()
	age := int(time.Since(ss.cs.created).Seconds())
	idle := age
	if at := ss.lastCmd.Load(); at > 0 {
		idle = int(time.Since(time.Unix(0, at)).Seconds())
	}
	if !st.ok {
		st.fd = -1
	}
	if st.cmd == "" {
		st.cmd = "NULL"
	}
	return fmt.Sprintf("id=%d addr=%s laddr=%s fd=%d name=%s age=%d idle=%d flags=%s db=0 sub=%d psub=%d ssub=%d multi=%d%s cmd=%s user=%s redir=-1 resp=%d lib-name=%s lib-ver=%s\n",
		ss.id, ss.conn.RemoteAddr(), ss.conn.LocalAddr(), st.fd, ss.cs.name, age, idle, flags, sub, psub, ssub, multi,
		appendStatsFields(nil, st), st.cmd, user, ss.proto(), ss.cs.libName, ss.cs.libVer)
}

// proto is the client's RESP version.
func (ss *session) proto() int {
	if ss.resp3.Load() {
		return 3
	}
	return 2
}

// allSessions returns the proxy's clients.
func (s *Server) allSessions() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*session, 0, len(s.sessions))
	for o := range s.sessions {
		out = append(out, o)
	}
	return out
}

// clientFilter is the filter of CLIENT LIST (TYPE, ID) and CLIENT KILL.
type clientFilter struct {
	ids              map[uint64]bool
	addr, laddr      string
	user, typ        string
	skipMe           bool
	maxAge           int64
	hasAge, anyMatch bool
}

func (f *clientFilter) match(ss, self *session) bool {
	switch {
	case f.ids != nil && !f.ids[ss.id],
		f.addr != "" && ss.conn.RemoteAddr().String() != f.addr,
		f.laddr != "" && ss.conn.LocalAddr().String() != f.laddr,
		f.user != "" && ss.clientUser() != f.user,
		f.typ != "" && ss.clientType() != f.typ,
		f.skipMe && ss == self:
		return false
	}
	if f.hasAge {
		ss.csMu.Lock()
		age := int64(time.Since(ss.cs.created).Seconds())
		ss.csMu.Unlock()
		return age >= f.maxAge
	}
	return true
}

func validType(t string) bool {
	switch t {
	case "normal", "master", "replica", "slave", "pubsub":
		return true
	}
	return false
}

// clientList answers CLIENT LIST [TYPE type] [ID id …].
func clientList(ss *session, r *request) []byte {
	f := &clientFilter{}
	args := r.args[2:]
	for len(args) > 0 {
		switch strings.ToLower(string(args[0])) {
		case "type":
			if len(args) < 2 {
				return resp.ErrorReply("ERR syntax error")
			}
			f.typ = strings.ToLower(string(args[1]))
			if !validType(f.typ) {
				return resp.ErrorReply("ERR Unknown client type '" + string(args[1]) + "'")
			}
			args = args[2:]
		case "id":
			if len(args) < 2 {
				return resp.ErrorReply("ERR syntax error")
			}
			f.ids = map[uint64]bool{}
			for _, a := range args[1:] {
				id, err := strconv.ParseInt(string(a), 10, 64)
				if err != nil || id <= 0 {
					return resp.ErrorReply("ERR Invalid client ID")
				}
				f.ids[uint64(id)] = true
			}
			args = nil
		default:
			return resp.ErrorReply("ERR syntax error")
		}
	}
	var b strings.Builder
	var listed []*session
	for _, o := range ss.s.allSessions() {
		if f.match(o, ss) {
			listed = append(listed, o)
		}
	}
	stats := loopStats(listed) // clientstats.go
	for _, o := range listed {
		st := stats[o]
		if o == ss {
			st.cmd = ss.s.fullCommandName(r.args) // as Redis: the command running
		}
		b.WriteString(o.clientLine(o == ss, st))
	}
	return resp.AppendBulkString(nil, b.String())
}

// clientKill answers CLIENT KILL addr:port and CLIENT KILL <filter> <value> ….
func clientKill(ss *session, r *request) []byte {
	args := r.args[2:]
	if len(args) == 0 {
		return wrongArgs("client|kill")
	}
	if len(args) == 1 { // old form: one address, OK or an error
		for _, o := range ss.s.allSessions() {
			if o.conn.RemoteAddr().String() == string(args[0]) {
				o.kill()
				return replyOK
			}
		}
		return resp.ErrorReply("ERR No such client")
	}
	if len(args)%2 != 0 {
		return resp.ErrorReply("ERR syntax error")
	}
	f := &clientFilter{skipMe: true}
	for i := 0; i < len(args); i += 2 {
		v := string(args[i+1])
		switch strings.ToLower(string(args[i])) {
		case "id":
			id, err := strconv.ParseInt(v, 10, 64)
			if err != nil || id <= 0 {
				return resp.ErrorReply("ERR client-id should be greater than 0")
			}
			f.ids = map[uint64]bool{uint64(id): true}
		case "addr":
			f.addr = v
		case "laddr":
			f.laddr = v
		case "user":
			if !ss.s.userExists(v) {
				return resp.ErrorReply("ERR No such user '" + v + "'")
			}
			f.user = v
		case "type":
			f.typ = strings.ToLower(v)
			if !validType(f.typ) {
				return resp.ErrorReply("ERR Unknown client type '" + v + "'")
			}
		case "skipme":
			switch strings.ToLower(v) {
			case "yes":
				f.skipMe = true
			case "no":
				f.skipMe = false
			default:
				return resp.ErrorReply("ERR syntax error")
			}
		case "maxage":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return resp.ErrorReply("ERR value is not an integer or out of range")
			}
			f.maxAge, f.hasAge = n, true
		default:
			return resp.ErrorReply("ERR syntax error")
		}
	}
	killed := 0
	for _, o := range ss.s.allSessions() {
		if f.match(o, ss) {
			o.kill()
			killed++
		}
	}
	return resp.AppendInt(nil, int64(killed))
}

// userExists reports whether name is a user of the proxy: "default", or one of users
// (CLIENT KILL USER answers Redis's error for any other).
func (s *Server) userExists(name string) bool {
	if name == "default" {
		return true
	}
	for _, u := range s.conf().Users {
		if u.Name == name {
			return true
		}
	}
	return false
}

// kill closes the client's connection (CLIENT KILL); its commands in flight are dropped.
func (ss *session) kill() {
	ss.closing.Store(true)
	ss.conn.Close()
}

// clientState is what CLIENT SETNAME/SETINFO record for a session.
type clientState struct {
	name, libName, libVer string
	user                  string // as authenticated ("" : default)
	created               time.Time
}

// CLIENT REPLY modes carried by a request to the session writer.
const (
	replyModeOn int8 = iota + 1
	replyModeOff
	replyModeSkip
)

// resetCommand answers RESET: the reader-side state is reset at once; the dedicated
// connections (WATCH, subscriptions) are released by the writer, in order.
func resetCommand(ss *session, r *request) bool {
	ss.tx.inMulti, ss.tx.queued, ss.tx.aborted = false, nil, false
	ss.authed, ss.readonly = !ss.s.authRequired(), false
	ss.resp3.Store(false) // as Redis: RESET goes back to RESP2
	ss.s.track.disable(ss)
	ss.s.monitorRemove(ss)
	ss.csMu.Lock()
	ss.cs.name, ss.cs.user = "", ""
	ss.csMu.Unlock()
	r.replyMode = replyModeOn
	r.exec, r.barrier = func(ss *session, r *request) []byte {
		ss.releaseWatch(true)
		ss.closePubsub()
		// Messages the relays queued before the reset go out before its reply.
		var out []byte
		for _, m := range ss.pending.takeMsgs() {
			out = append(out, m...)
			ss.releaseOut(int64(len(m)))
		}
		ss.inPubSub.Store(false)
		return append(out, "+RESET\r\n"...)
	}, true
	return true
}

func clientCommand(ss *session, r *request) []byte {
	if len(r.args) < 2 {
		return wrongArgs("client")
	}
	sub := lowerName(r.args[1])
	switch sub {
	case "setname":
		if len(r.args) != 3 {
			return wrongArgs("client|setname")
		}
		if !validClientAttr(r.args[2]) {
			return replyBadClientName
		}
		ss.csMu.Lock()
		ss.cs.name = string(r.args[2])
		ss.csMu.Unlock()
		return replyOK
	case "getname", "id", "info":
		if len(r.args) != 2 {
			return wrongArgs("client|" + sub)
		}
	}
	switch sub {
	case "getname":
		if ss.cs.name == "" {
			return replyNil
		}
		return resp.AppendBulkString(nil, ss.cs.name)
	case "setinfo":
		if len(r.args) != 4 {
			return wrongArgs("client|setinfo")
		}
		if opt := lowerName(r.args[2]); (opt == "lib-name" || opt == "lib-ver") && !validClientAttr(r.args[3]) {
			return resp.ErrorReply("ERR " + opt + " cannot contain spaces, newlines or special characters.")
		}
		ss.csMu.Lock()
		defer ss.csMu.Unlock()
		switch lowerName(r.args[2]) {
		case "lib-name":
			ss.cs.libName = string(r.args[3])
		case "lib-ver":
			ss.cs.libVer = string(r.args[3])
		default:
			return resp.ErrorReply("ERR Unrecognized option '" + string(r.args[2]) + "'")
		}
		return replyOK
	case "id":
		return resp.AppendInt(nil, int64(ss.id))
	case "info":
		st := loopStats([]*session{ss})[ss] // clientstats.go
		st.cmd = ss.s.fullCommandName(r.args)
		return resp.AppendBulkString(nil, ss.clientLine(true, st))
	case "list":
		return clientList(ss, r)
	case "kill":
		return clientKill(ss, r)
	case "no-evict", "no-touch":
		if len(r.args) != 3 {
			return wrongArgs("client|" + sub)
		}
		if m := lowerName(r.args[2]); m != "on" && m != "off" {
			return resp.ErrorReply("ERR syntax error")
		}
		return replyOK
	case "reply":
		if len(r.args) != 3 {
			return wrongArgs("client|reply")
		}
		switch lowerName(r.args[2]) {
		case "on":
			r.replyMode = replyModeOn
			return replyOK
		case "off":
			r.replyMode = replyModeOff
			return replyOK
		case "skip":
			r.replyMode = replyModeSkip
			return replyOK
		}
		return resp.ErrorReply("ERR syntax error")
	}
	if out := trackingCommand(ss, r, sub); out != nil {
		return out
	}
	return resp.ErrorReply(fmt.Sprintf("ERR CLIENT %s is not supported by the proxy", strings.ToUpper(string(r.args[1]))))
}

package proxy

import (
	"bytes"
	"strconv"
	"sync"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// slowEntry is one SLOWLOG entry: a command slower than slowlog-log-slower-than, end to
// end as the client saw it, with the node that served it.
type slowEntry struct {
	id       int64
	at       time.Time
	duration time.Duration
	args     [][]byte // into buf
	buf      []byte
	client   string
	name     string
	node     string
}

// slowlog keeps the newest slowlog-max-len slow commands in a ring whose entries, and their
// argument buffers, are reused: under overload every command can be slow, and logging one
// must then cost a copy, not allocations and a shift of the whole log.
type slowlog struct {
	mu     sync.Mutex
	ring   []slowEntry
	head   int // the oldest entry
	n      int
	nextID int64
}

const (
	slowlogMaxArgs   = 32
	slowlogMaxArgLen = 128
)

// add logs e; its arguments are copied (trimmed and redacted as Redis does).
func (sl *slowlog) add(maxLen int, e slowEntry) {
	if maxLen <= 0 {
		return
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if len(sl.ring) != maxLen {
		sl.resize(maxLen)
	}
	var slot *slowEntry
	if sl.n < maxLen {
		slot = &sl.ring[(sl.head+sl.n)%maxLen]
		sl.n++
	} else {
		slot = &sl.ring[sl.head]
		sl.head = (sl.head + 1) % maxLen
	}
	buf, args := slot.buf[:0], slot.args[:0]
	var ends [slowlogMaxArgs]int
	n := min(len(e.args), slowlogMaxArgs)
	for i := 0; i < n; i++ {
		a := e.args[i]
		switch {
		case isSecretArg(e.args, i):
			buf = append(buf, redacted...)
		case i == slowlogMaxArgs-1 && len(e.args) > slowlogMaxArgs:
			buf = append(buf, "... ("...)
			buf = strconv.AppendInt(buf, int64(len(e.args)-slowlogMaxArgs+1), 10)
			buf = append(buf, " more arguments)"...)
		case len(a) > slowlogMaxArgLen:
			buf = append(buf, a[:slowlogMaxArgLen]...)
			buf = append(buf, "... ("...)
			buf = strconv.AppendInt(buf, int64(len(a)-slowlogMaxArgLen), 10)
			buf = append(buf, " more bytes)"...)
		default:
			buf = append(buf, a...)
		}
		ends[i] = len(buf)
	}
	for i, from := 0, 0; i < n; i++ {
		args = append(args, buf[from:ends[i]:ends[i]])
		from = ends[i]
	}
	e.id, e.args, e.buf = sl.nextID, args, buf
	sl.nextID++
	*slot = e
}

// resize keeps the newest entries that fit in a ring of size (slowlog-max-len changed).
func (sl *slowlog) resize(size int) {
	ring := make([]slowEntry, size)
	keep := min(sl.n, size)
	for i := 0; i < keep; i++ {
		ring[i] = sl.ring[(sl.head+sl.n-keep+i)%len(sl.ring)]
	}
	sl.ring, sl.head, sl.n = ring, 0, keep
}

// newest returns the i-th newest entry (0: the last logged); mu is held.
func (sl *slowlog) newest(i int) *slowEntry {
	return &sl.ring[(sl.head+sl.n-1-i)%len(sl.ring)]
}

func (sl *slowlog) reset() {
	sl.mu.Lock()
	sl.clear()
	sl.mu.Unlock()
}

// clear empties the log; mu is held.
func (sl *slowlog) clear() { sl.ring, sl.head, sl.n = nil, 0, 0 }

// redacted replaces secret arguments in the slow log, as Redis does.
var redacted = []byte("(redacted)")

// isSecretArg reports whether args[i] is a password: everything after AUTH, the user and
// password after HELLO's AUTH and MIGRATE's AUTH/AUTH2, and the values of CONFIG SET.
func isSecretArg(args [][]byte, i int) bool {
	if i == 0 || len(args) < 2 {
		return false
	}
	name := args[0]
	switch {
	case bytes.EqualFold(name, []byte("auth")):
		return true
	case bytes.EqualFold(name, []byte("config")):
		return bytes.EqualFold(args[1], []byte("set")) && i >= 3 && i%2 == 1
	case bytes.EqualFold(name, []byte("hello")), bytes.EqualFold(name, []byte("migrate")):
		hello := bytes.EqualFold(name, []byte("hello"))
		for j := 1; j < i; j++ {
			switch {
			case bytes.EqualFold(args[j], []byte("auth")):
				if i == j+1 || hello && i == j+2 { // HELLO AUTH user pass; MIGRATE AUTH pass
					return true
				}
			case bytes.EqualFold(args[j], []byte("auth2")): // MIGRATE AUTH2 user pass
				if i == j+1 || i == j+2 {
					return true
				}
			}
		}
	}
	return false
}

// slowlogCommand answers SLOWLOG GET [count] / LEN / RESET with the proxy's own entries,
// each with Redis's six fields (clients parse a seventh as Redis 8's argument count).
// PROXY SLOWLOG [count] (withNode) adds a seventh: the node that served the command.
func slowlogCommand(ss *session, r *request) []byte {
	return slowlogAnswer(ss, r.args, false)
}

func slowlogAnswer(ss *session, args [][]byte, withNode bool) []byte {
	sl := &ss.s.slow
	if len(args) < 2 {
		return wrongArgs("slowlog")
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	// A smaller slowlog-max-len applies at once, as Redis trims its log on CONFIG SET.
	if maxLen := ss.s.conf().SlowlogMaxLen; maxLen <= 0 {
		sl.clear()
	} else if sl.n > maxLen {
		sl.resize(maxLen)
	}
	switch lowerName(args[1]) {
	case "len":
		return resp.AppendInt(nil, int64(sl.n))
	case "reset":
		sl.clear()
		return replyOK
	case "get":
		count := 10
		if len(args) > 2 {
			n, err := strconv.Atoi(string(args[2]))
			if err != nil || n < -1 {
				return resp.ErrorReply("ERR count should be greater than or equal to -1")
			}
			count = n
		}
		if count == -1 || count > sl.n {
			count = sl.n
		}
		b := resp.AppendArrayHeader(nil, count)
		for i := 0; i < count; i++ {
			e := sl.newest(i)
			if withNode {
				b = resp.AppendArrayHeader(b, 7)
			} else {
				b = resp.AppendArrayHeader(b, 6)
			}
			b = resp.AppendInt(b, e.id)
			b = resp.AppendInt(b, e.at.Unix())
			b = resp.AppendInt(b, e.duration.Microseconds())
			b = resp.AppendArrayHeader(b, len(e.args))
			for _, a := range e.args {
				b = resp.AppendBulk(b, a)
			}
			b = resp.AppendBulkString(b, e.client)
			b = resp.AppendBulkString(b, e.name)
			if withNode {
				b = resp.AppendBulkString(b, e.node)
			}
		}
		return b
	}
	return resp.ErrorReply("ERR unknown subcommand '" + string(args[1]) + "'. Try SLOWLOG HELP.")
}

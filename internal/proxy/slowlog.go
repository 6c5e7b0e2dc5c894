package proxy

import (
	"strconv"
	"strings"
	"sync"
	"time"
)

// slowEntry is one SLOWLOG entry: a command slower than slowlog-log-slower-than, end to
// end as the client saw it, with the node that served it.
type slowEntry struct {
	id       int64
	at       time.Time
	duration time.Duration
	args     [][]byte
	client   string
	name     string
	node     string
}

// slowlog keeps the newest slowlog-max-len slow commands.
type slowlog struct {
	mu      sync.Mutex
	entries []slowEntry // newest last
	nextID  int64
}

const (
	slowlogMaxArgs   = 32
	slowlogMaxArgLen = 128
)

func (sl *slowlog) add(maxLen int, e slowEntry) {
	if maxLen <= 0 {
		return
	}
	// Copy (and trim, as Redis does) the arguments: they live in the client's buffer.
	n := min(len(e.args), slowlogMaxArgs)
	args := make([][]byte, n)
	secret := secretArgs(e.args)
	for i := 0; i < n; i++ {
		a := e.args[i]
		if secret[i] {
			a = redacted
		}
		if i == slowlogMaxArgs-1 && len(e.args) > slowlogMaxArgs {
			a = []byte("... (" + strconv.Itoa(len(e.args)-slowlogMaxArgs+1) + " more arguments)")
		} else if len(a) > slowlogMaxArgLen {
			a = append(append([]byte(nil), a[:slowlogMaxArgLen]...), []byte("... ("+strconv.Itoa(len(a)-slowlogMaxArgLen)+" more bytes)")...)
		} else {
			a = append([]byte(nil), a...)
		}
		args[i] = a
	}
	e.args = args
	sl.mu.Lock()
	defer sl.mu.Unlock()
	e.id = sl.nextID
	sl.nextID++
	sl.entries = append(sl.entries, e)
	if len(sl.entries) > maxLen {
		sl.entries = append(sl.entries[:0], sl.entries[len(sl.entries)-maxLen:]...)
	}
}

// redacted replaces secret arguments in the slow log, as Redis does.
var redacted = []byte("(redacted)")

// secretArgs marks the arguments of args that are passwords: everything after AUTH, the
// user and password after HELLO's AUTH and MIGRATE's AUTH/AUTH2, and the values of
// CONFIG SET.
func secretArgs(args [][]byte) map[int]bool {
	if len(args) < 2 {
		return nil
	}
	m := map[int]bool{}
	switch lowerName(args[0]) {
	case "auth":
		for i := 1; i < len(args); i++ {
			m[i] = true
		}
	case "hello", "migrate":
		hello := lowerName(args[0]) == "hello"
		for i := 1; i < len(args); i++ {
			switch strings.ToLower(string(args[i])) {
			case "auth":
				m[i+1] = true
				if hello { // HELLO AUTH user pass; MIGRATE AUTH pass
					m[i+2] = true
				}
			case "auth2": // MIGRATE AUTH2 user pass
				m[i+1], m[i+2] = true, true
			}
		}
	case "config":
		if strings.EqualFold(string(args[1]), "set") {
			for i := 3; i < len(args); i += 2 {
				m[i] = true
			}
		}
	}
	return m
}

// slowlogCommand answers SLOWLOG GET [count] / LEN / RESET with the proxy's own entries.
// Each entry has Redis's six fields plus a seventh: the node that served the command.
func slowlogCommand(ss *session, r *request) []byte {
	sl := &ss.s.slow
	if len(r.args) < 2 {
		return wrongArgs("slowlog")
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	switch lowerName(r.args[1]) {
	case "len":
		return appendInt(nil, int64(len(sl.entries)))
	case "reset":
		sl.entries = nil
		return replyOK
	case "get":
		count := 10
		if len(r.args) > 2 {
			n, err := strconv.Atoi(string(r.args[2]))
			if err != nil || n < -1 {
				return errorReply("ERR count should be greater than or equal to -1")
			}
			count = n
		}
		if count == -1 || count > len(sl.entries) {
			count = len(sl.entries)
		}
		b := appendArrayHeader(nil, count)
		for i := 0; i < count; i++ {
			e := sl.entries[len(sl.entries)-1-i]
			b = appendArrayHeader(b, 7)
			b = appendInt(b, e.id)
			b = appendInt(b, e.at.Unix())
			b = appendInt(b, e.duration.Microseconds())
			b = appendArrayHeader(b, len(e.args))
			for _, a := range e.args {
				b = appendBulk(b, a)
			}
			b = appendBulkString(b, e.client)
			b = appendBulkString(b, e.name)
			b = appendBulkString(b, e.node)
		}
		return b
	}
	return errorReply("ERR unknown subcommand '" + string(r.args[1]) + "'. Try SLOWLOG HELP.")
}

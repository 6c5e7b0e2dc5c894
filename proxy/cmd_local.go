package proxy

import (
	"fmt"
	"strings"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// The commands the proxy answers itself (see the commands table in dispatch.go).

func localPing(ss *session, r *request) []byte {
	switch len(r.args) {
	case 1:
		return replyPong
	case 2:
		return resp.AppendBulk(nil, r.args[1])
	}
	return wrongArgs("ping")
}

func localEcho(ss *session, r *request) []byte {
	if len(r.args) != 2 {
		return wrongArgs("echo")
	}
	return resp.AppendBulk(nil, r.args[1])
}

// localQuit answers QUIT; the session closes after writing the reply.
func localQuit(ss *session, r *request) []byte {
	r.slot = slotQuit
	return replyOK
}

func localSelect(ss *session, r *request) []byte {
	if len(r.args) != 2 {
		return wrongArgs("select")
	}
	if string(r.args[1]) != "0" {
		return resp.ErrorReply("ERR DB index is out of range")
	}
	return replyOK
}

func localOK(ss *session, r *request) []byte { return replyOK }

// unsupported refuses a command that would act on one node of the cluster, or on none.
var unsupported = localHandler(func(ss *session, r *request) []byte {
	return resp.ErrorReply(fmt.Sprintf("ERR %s is not supported by the proxy", strings.ToUpper(string(r.args[0]))))
})

func wrongArgs(cmd string) []byte {
	return resp.ErrorReply("ERR wrong number of arguments for '" + cmd + "' command")
}

// hello answers HELLO [2|3 …]: the protocol switches once authentication is settled, and
// the reply is written in the new one (finish converts it to a map for RESP3, resp3.go).
func (ss *session) hello(r *request) []byte {
	args := r.args
	proto := ss.proto()
	if len(args) > 1 {
		switch string(args[1]) {
		case "2":
			proto = 2
		case "3":
			proto = 3
		default:
			return resp.ErrorReply("NOPROTO unsupported protocol version")
		}
		// As Redis: the options are parsed first, then AUTH is tried, and only an
		// authenticated client gets its name set (issue 28: a name set before AUTH showed
		// in CLIENT LIST).
		var user, pass, name []byte
		for i := 2; i < len(args); i++ {
			switch strings.ToLower(string(args[i])) {
			case "auth":
				if i+2 >= len(args) {
					return resp.ErrorReply("ERR Syntax error in HELLO option 'auth'")
				}
				user, pass = args[i+1], args[i+2]
				i += 2
			case "setname":
				if i+1 >= len(args) {
					return resp.ErrorReply("ERR Syntax error in HELLO option 'setname'")
				}
				name = args[i+1]
				i++
			default:
				return resp.ErrorReply("ERR Syntax error in HELLO option '" + string(args[i]) + "'")
			}
		}
		if user != nil {
			if reply := ss.helloAuth(r, string(user), string(pass)); reply != nil {
				return reply
			}
		}
		if !ss.authed {
			return replyHelloNoAuth
		}
		if name != nil {
			if !validClientAttr(name) {
				return replyBadClientName
			}
			ss.csMu.Lock()
			ss.cs.name = string(name)
			ss.csMu.Unlock()
		}
	}
	if !ss.authed {
		return replyHelloNoAuth
	}
	ss.resp3.Store(proto == 3)
	b := resp.AppendArrayHeader(nil, 14)
	b = resp.AppendBulkString(b, "server")
	b = resp.AppendBulkString(b, "redis")
	b = resp.AppendBulkString(b, "version")
	b = resp.AppendBulkString(b, "7.0.0")
	b = resp.AppendBulkString(b, "proto")
	b = resp.AppendInt(b, int64(proto))
	b = resp.AppendBulkString(b, "id")
	b = resp.AppendInt(b, int64(ss.id))
	b = resp.AppendBulkString(b, "mode")
	b = resp.AppendBulkString(b, "standalone")
	b = resp.AppendBulkString(b, "role")
	b = resp.AppendBulkString(b, "master")
	b = resp.AppendBulkString(b, "modules")
	b = resp.AppendArrayHeader(b, 0)
	return b
}

// Replies the proxy gives itself.
var (
	replyOK     = []byte("+OK\r\n")
	replyPong   = []byte("+PONG\r\n")
	replyNil    = []byte("$-1\r\n")
	replyQueued = []byte("+QUEUED\r\n")
)

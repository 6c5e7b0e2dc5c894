package proxy

import (
	"strconv"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// CLIENT UNBLOCK id [TIMEOUT|ERROR] for the proxy's clients: a client blocked through the
// proxy waits on a private connection to a node (private.go); the proxy knows that
// connection's client id on the node (CLIENT ID, asked once per private connection, when it
// is made) and sends CLIENT UNBLOCK for it to the node (on the loop's connection to it),
// which answers the blocked command as Redis does: the timeout reply (TIMEOUT) or
// `-UNBLOCKED client unblocked via CLIENT UNBLOCK` (ERROR). The answer is the node's: 1
// when it unblocked the client, else 0 (0 also for a client not blocked, or unknown).

// blockedAt is where a session's blocking command waits: the node and the node's id of the
// private connection.
type blockedAt struct {
	n  *node
	id int64
}

var replyNodeClientID = resp.AppendCommand(nil, []byte("CLIENT"), []byte("ID"))

// clientUnblock answers CLIENT UNBLOCK (an exec handler: it waits for the node).
func clientUnblock(ss *session, r *request) []byte {
	if len(r.args) != 3 && len(r.args) != 4 {
		return resp.ErrorReply("ERR unknown subcommand or wrong number of arguments for 'unblock'. Try CLIENT HELP.")
	}
	id, err := strconv.ParseInt(string(r.args[2]), 10, 64)
	if err != nil {
		return resp.ErrorReply("ERR value is not an integer or out of range")
	}
	reason := []byte("TIMEOUT")
	if len(r.args) == 4 {
		switch lowerName(r.args[3]) {
		case "timeout":
		case "error":
			reason = []byte("ERROR")
		default:
			return resp.ErrorReply("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
		}
	}
	var b *blockedAt
	for _, o := range ss.s.allSessions() {
		if int64(o.id) == id {
			b = o.blockedOn.Load()
			break
		}
	}
	if b == nil {
		return resp.AppendInt(nil, 0)
	}
	u := &request{raw: resp.AppendCommand(nil, []byte("CLIENT"), []byte("UNBLOCK"), []byte(strconv.FormatInt(b.id, 10)), reason),
		slot: -1, pinned: b.n, done: make(chan struct{}, 1)}
	return ss.call(u)
}

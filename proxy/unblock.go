package proxy

import (
	"context"
	"strconv"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// CLIENT UNBLOCK id [TIMEOUT|ERROR] for the proxy's clients: a client blocked through the
// proxy waits on a dedicated connection to a node (dedicated.go); the proxy knows that
// connection's client id on the node (CLIENT ID, asked once per dedicated connection, the
// first time it carries a blocking command) and sends CLIENT UNBLOCK for it to the node,
// which answers the blocked command as Redis does: the timeout reply (TIMEOUT) or
// `-UNBLOCKED client unblocked via CLIENT UNBLOCK` (ERROR). The answer is the node's: 1
// when it unblocked the client, else 0 (0 also for a client not blocked, or unknown).

// blockedAt is where a session's blocking command waits: the node and the node's id of the
// dedicated connection.
type blockedAt struct {
	n  *node
	id int64
}

// unblockTimeout bounds the CLIENT UNBLOCK sent to a node.
const unblockTimeout = 5 * time.Second

var replyNodeClientID = resp.AppendCommand(nil, []byte("CLIENT"), []byte("ID"))

// noteBlocked records dc as where r blocks (nil: nothing to record); it learns the
// connection's id on the node first if it does not know it.
func (ss *session) noteBlocked(ctx context.Context, n *node, r *request, dc *directConn) *blockedAt {
	if r.info == nil || r.info.Flags&command.Blocking == 0 {
		return nil
	}
	if dc.nodeID == 0 {
		reps, err := dc.roundTrip(ctx, replyNodeClientID, 1)
		if err != nil || len(reps) != 1 || len(reps[0]) < 2 || reps[0][0] != ':' {
			return nil // not unblockable; the command still runs
		}
		id, err := strconv.ParseInt(string(reps[0][1:len(reps[0])-2]), 10, 64)
		if err != nil {
			return nil
		}
		dc.nodeID = id
	}
	b := &blockedAt{n: n, id: dc.nodeID}
	ss.blockedOn.Store(b)
	return b
}

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
	ctx, cancel := context.WithTimeout(ss.ctx, unblockTimeout)
	defer cancel()
	dc, err := ss.s.direct.acquire(ctx, b.n)
	if err != nil {
		return resp.ErrorReply("ERR proxy: " + err.Error())
	}
	reps, err := dc.roundTrip(ctx, resp.AppendCommand(nil, []byte("CLIENT"), []byte("UNBLOCK"), []byte(strconv.FormatInt(b.id, 10)), reason), 1)
	ss.s.direct.release(b.n, dc, err == nil)
	if err != nil {
		return resp.ErrorReply("ERR proxy: " + err.Error())
	}
	return reps[0]
}

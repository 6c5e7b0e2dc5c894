package proxy

import (
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// request is one command on its way to a cluster node and back.
type request struct {
	info    *command.Info
	args    [][]byte
	raw     []byte // RESP encoding of args
	slot    int    // -1: no key; slotQuit: QUIT, close after the reply
	asking  bool   // send ASKING first (one-shot, after an ASK redirection)
	barrier bool   // the reader waits until the writer has finished this request
	direct  bool   // sent on a dedicated connection (blocking commands)
	pinned  *node  // send to this node instead of the slot owner (fan-out)
	// deferred: not sent when read, so as not to overtake earlier commands (session.send)
	deferred bool

	// exec, when set, produces the reply in the session writer, in order (commands the
	// proxy answers from several nodes or with session state).
	exec func(ss *session, r *request) []byte
	// parts are sub-requests (one per slot or node) whose replies merge combines.
	parts      []*request
	merge      func(replies [][]byte) []byte
	local      bool       // reply was produced by the proxy when the command was read
	keyPos     []int      // for a part: positions of its keys in the original command
	noReply    bool       // nothing to write: the reply comes through the subscription relay
	redirected bool       // followed at least one MOVED or ASK
	replyMode  int8       // CLIENT REPLY ON/OFF/SKIP: changes which replies are written
	resp3      bool       // the client speaks RESP3: finish converts the reply (resp3.go)
	queued     [][][]byte // EXEC: the transaction's commands, for their RESP3 replies

	reply []byte // complete reply, when err is nil
	err   error  // transport-level failure
	// owner is the session whose output buffer accounts for reply; counted is how many
	// bytes of it are accounted (released when the reply is written or replaced).
	owner   *session
	counted int64
	node    *node // node that answered (or failed)
	done    chan struct{}
	start   time.Time
	sent    time.Time // last written to a shared backend connection
}

func (r *request) complete(reply []byte, err error) {
	r.reply, r.err = reply, err
	if r.owner != nil && len(reply) > 0 {
		r.counted += int64(len(reply))
		r.owner.addOut(int64(len(reply)))
	}
	r.done <- struct{}{}
}

// discard is pushed in front of a request sent with ASKING; its reply (+OK) is dropped.
var discard = &request{}

// slotQuit in request.slot marks QUIT: the client is closed once the reply is written.
const slotQuit = -2

// closedDone is the done channel of a request answered at once.
func closedDone() chan struct{} {
	ch := make(chan struct{}, 1)
	ch <- struct{}{}
	return ch
}

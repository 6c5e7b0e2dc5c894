package proxy

import (
	"sync/atomic"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

// Output-buffer limits. A client's held bytes are what the proxy keeps for it and has not
// written to its socket: on its event loop, the replies in its output buffer and the
// completed replies waiting for earlier ones (lclient.pendingOut); in the slow path's
// goroutines, replies received and not yet handed to the loop and Pub/Sub messages not yet
// pulled (session.out). Over client-output-buffer-limit
// (client-output-buffer-limit-pubsub in Pub/Sub mode) the client is disconnected, as Redis
// does, so one slow consumer cannot make the proxy's memory grow without bound. One
// policy, outputOver, judges the sum, always on the client's loop (lclient.checkOutput):
// when bytes are added there, on the loop's tick (a client stuck over the soft limit), and
// when the slow path holds more than a limit (session.addOut asks the loop to check).

// outputOver reports which limit held exceeds: "hard" at once, "soft" once held has stayed
// over the soft limit for lim.SoftFor. *softSince (unix nanoseconds, 0: under the soft
// limit) is the client's soft-limit clock; now is the current time.
func outputOver(held int64, lim config.OutputLimit, softSince *int64, now int64) string {
	if lim.Hard > 0 && held > lim.Hard {
		return "hard"
	}
	if lim.Soft <= 0 || held <= lim.Soft {
		*softSince = 0
		return ""
	}
	if *softSince == 0 {
		*softSince = now
	}
	if now-*softSince >= int64(lim.SoftFor) {
		return "soft"
	}
	return ""
}

// outBuffer counts the bytes the slow path holds for one client (see above).
type outBuffer struct {
	bytes atomic.Int64
	asked atomic.Bool // a check was posted to the loop and has not run yet
}

// addOut accounts n more bytes held by the slow path for the client; past a limit it asks
// the client's loop to apply the policy.
func (ss *session) addOut(n int64) {
	v := ss.out.bytes.Add(n)
	cfg := ss.s.conf()
	lim := cfg.OutputLimit
	if ss.inPubSub.Load() || ss.monitor.Load() {
		lim = cfg.OutputLimitPubSub
	}
	if (lim.Hard > 0 && v > lim.Hard || lim.Soft > 0 && v > lim.Soft) && !ss.out.asked.Swap(true) {
		if lc, ok := ss.conn.(*loopConn); ok && lc.c != nil {
			c := lc.c
			c.l.post(func() {
				ss.out.asked.Store(false)
				c.checkOutput()
			})
		}
	}
}

// releaseOut accounts n bytes as handed to the loop (or dropped).
func (ss *session) releaseOut(n int64) {
	if n != 0 {
		ss.out.bytes.Add(-n)
	}
}

// releaseReq releases the bytes accounted for r and its parts.
func (ss *session) releaseReq(r *request) {
	ss.releaseOut(r.counted)
	r.counted = 0
	for _, p := range r.parts {
		ss.releaseOut(p.counted)
		p.counted = 0
	}
}

// pushMsg queues a Pub/Sub message for the writer; it reports false once the session ended.
func (ss *session) pushMsg(msg []byte) bool {
	if ss.ctx.Err() != nil {
		return false
	}
	if ss.resp3.Load() {
		msg = pushFrames(msg)
	}
	ss.addOut(int64(len(msg)))
	ss.pending.push(msg)
	return ss.ctx.Err() == nil
}

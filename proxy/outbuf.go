package proxy

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

// outBuffer accounts the reply bytes the proxy holds for one client: replies received from
// the cluster (or Pub/Sub messages) that are not yet written to the client's socket. A
// client that does not read its replies makes it grow; over client-output-buffer-limit
// (client-output-buffer-limit-pubsub in Pub/Sub mode) the client is disconnected, as Redis
// does, so one slow consumer cannot make the proxy's memory grow without bound.
type outBuffer struct {
	bytes     atomic.Int64
	mu        sync.Mutex
	softSince time.Time // when bytes first went over the soft limit (zero: under it)
	killed    atomic.Bool
}

// addOut accounts n more bytes held for the client and enforces the limit.
func (ss *session) addOut(n int64) {
	v := ss.out.bytes.Add(n)
	cfg := ss.s.conf()
	lim, class := cfg.OutputLimit, "normal"
	if ss.inPubSub.Load() {
		lim, class = cfg.OutputLimitPubSub, "pubsub"
	}
	if why := ss.out.over(v, lim); why != "" {
		ss.overflow(class, why, v)
	}
}

// over reports which limit v exceeds ("hard", "soft" or "").
func (o *outBuffer) over(v int64, lim config.OutputLimit) string {
	if lim.Hard > 0 && v > lim.Hard {
		return "hard"
	}
	if lim.Soft <= 0 {
		return ""
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if v <= lim.Soft {
		o.softSince = time.Time{}
		return ""
	}
	if o.softSince.IsZero() {
		o.softSince = time.Now()
	}
	if time.Since(o.softSince) >= lim.SoftFor {
		return "soft"
	}
	return ""
}

// releaseOut accounts n bytes as written (or dropped).
func (ss *session) releaseOut(n int64) {
	if n != 0 && ss.out.bytes.Add(-n) <= 0 {
		ss.out.mu.Lock()
		ss.out.softSince = time.Time{}
		ss.out.mu.Unlock()
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

// overflow disconnects the client once, counting it.
func (ss *session) overflow(class, why string, held int64) {
	if ss.out.killed.Swap(true) {
		return
	}
	ss.s.metrics.outputLimitClosed.WithLabelValues(class).Inc()
	ss.log().Warn("client output buffer limit reached; closing the client", "client_id", ss.id,
		"addr", ss.conn.RemoteAddr().String(), "class", class, "limit", why, "held_bytes", held)
	ss.cancel()
	ss.conn.Close()
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

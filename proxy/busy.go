package proxy

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// Busy and paused nodes are alive. A node that keeps the commands of a connection waiting
// is not always gone: it may be running a script (the caller's connection waits for the
// result; once the script runs past the node's busy-reply-threshold, every other
// connection gets -BUSY), loading its dataset after a restart (-LOADING), or paused by a
// CLIENT PAUSE. The proxy tells such a node from a dead or frozen one by:
//
//   - a fresh connection's answer: when commands on a loop connection wait longer than
//     backend-suspect-after, a probe (a new connection, AUTH when configured, PING) is
//     sent, again every quarter of backend-read-timeout while they keep waiting; -BUSY or
//     -LOADING means the node is executing (a dead node refuses or resets the connection,
//     a frozen one does not answer). A loop or dedicated connection whose hand-shake PING is
//     answered -BUSY or -LOADING is likewise taken, not refused: the node is reachable, and
//     the commands sent on it get the node's own -BUSY or -LOADING error, as a client of a
//     single Redis does;
//   - the CLIENT PAUSE the proxy itself fanned out, until its end.
//
// While either holds (the node answered -BUSY/-LOADING, or the pause ended, less than twice
// backend-read-timeout plus backend-connect-timeout ago), the node is not suspect
// and backend-read-timeout does not apply to its connections: their commands wait for
// their replies up to backend-busy-timeout (measured from the last reply). No failover is
// assumed and nothing is abandoned. A frozen node (SIGSTOP, a hung host) answers no probe
// and is handled as before (health.go).
//
// What the proxy cannot tell: before a script reaches the node's busy-reply-threshold
// (lua-time-limit, 5 s by default) the node answers no one, exactly like a frozen one, so a
// script that runs longer than backend-read-timeout but ends before the threshold still
// fails with "did not answer in time"; keep backend-read-timeout above the nodes'
// busy-reply-threshold where scripts may run that long. A pause set on a node directly
// (not through the proxy) is not known either.

// executingReply reports whether rep is a node's answer that it is executing rather than
// gone (-BUSY: a script or function runs past busy-reply-threshold; -LOADING: the dataset
// is being loaded), and which.
func executingReply(rep []byte) (string, bool) {
	switch {
	case errorCode(rep, "BUSY"):
		return "busy", true
	case errorCode(rep, "LOADING"):
		return "loading", true
	}
	return "", false
}

// errorCode reports whether rep is an error reply whose code is code.
func errorCode(rep []byte, code string) bool {
	return len(rep) > 0 && rep[0] == '-' && errorCodeAny(rep, code)
}

// sawExecuting records that n answered that it is executing (reason busy or loading). A
// node that does so answers: it is no longer suspect.
func (c *cluster) sawExecuting(n *node, reason string) {
	if n == nil {
		return
	}
	now := time.Now().UnixNano()
	switch reason {
	case "busy":
		n.scriptAt.Store(now)
	case "loading":
		n.loadingAt.Store(now)
	}
	if prev := n.executing.Swap(now); now-prev > int64(c.holdWindow(c.conf().BackendReadTimeout)) { // a new episode
		c.metrics.busyNodes.WithLabelValues(n.addr, reason).Inc()
		c.log.Info("cluster node is executing, not gone; its commands wait up to backend-busy-timeout",
			"node", n.addr, "reason", reason)
	}
	c.nodeAnswered(n)
}

// holdsCommands reports whether n is known to hold commands while alive at now (UnixNano):
// it answered -BUSY or -LOADING within the last holdWindow, or a CLIENT PAUSE fanned out
// by the proxy ended less than holdWindow ago.
func (c *cluster) holdsCommands(n *node, now int64, readTimeout time.Duration) bool {
	w := int64(c.holdWindow(readTimeout))
	return now-n.executing.Load() < w || now < c.pausedUntil.Load()+w
}

// holdWindow is how long one sign that a node is executing counts: twice readTimeout plus
// the connect timeout, so that a probe that takes its whole time (a node slow to accept on
// a loaded host) does not let it lapse while probes every readTimeout/4 renew it.
func (c *cluster) holdWindow(readTimeout time.Duration) time.Duration {
	return 2*readTimeout + c.conf().BackendConnectTimeout
}

// probeExecuting asks n on a fresh connection whether it is executing, unless a probe runs
// or one started less than a quarter of backend-read-timeout ago.
func (c *cluster) probeExecuting(n *node, now int64) {
	cfg := c.conf()
	every := max(cfg.BackendReadTimeout/4, loopTick)
	last := n.probeAt.Load()
	if now-last < int64(every) || n.probing.Load() || !n.probeAt.CompareAndSwap(last, now) || n.probing.Swap(true) {
		return
	}
	go func() {
		defer n.probing.Store(false)
		rep, err := c.probeReply(n.addr)
		if err != nil {
			return
		}
		if reason, ok := executingReply(rep); ok {
			c.sawExecuting(n, reason)
		}
	}()
}

// probeReply sends PING on a new connection to addr (after AUTH when the backends need
// it) and returns the reply, or AUTH's error reply.
func (c *cluster) probeReply(addr string) ([]byte, error) {
	cfg := c.conf()
	ctx, cancel := context.WithTimeout(c.ctx, cfg.BackendConnectTimeout+cfg.BackendReadTimeout)
	defer cancel()
	conn, err := c.dialNode(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(cfg.BackendReadTimeout))
	if cfg.BackendPassword != "" {
		args := [][]byte{[]byte("AUTH"), []byte(cfg.BackendPassword)}
		if cfg.BackendUser != "" {
			args = [][]byte{[]byte("AUTH"), []byte(cfg.BackendUser), []byte(cfg.BackendPassword)}
		}
		rep, err := roundTrip(conn, resp.AppendCommand(nil, args...))
		if err != nil || rep[0] == '-' {
			return rep, err
		}
	}
	return roundTrip(conn, []byte("*1\r\n$4\r\nPING\r\n"))
}

// stillLoading reports whether a command answered CLUSTERDOWN by n should get its retries
// anew because n is a restarted node that is loading its dataset, or loaded it less than
// holdWindow ago (a restarted cluster node answers CLUSTERDOWN to commands with keys until
// it has loaded and rejoined the cluster): n answered -LOADING within the window (to a
// hand-shake, a probe or a command), or answers it now to a probe (at most one every
// quarter of backend-read-timeout per node, whoever asks). It stops backend-busy-timeout
// after the first such retry (*since).
func (c *cluster) stillLoading(n *node, since *time.Time) bool {
	if n == nil {
		return false
	}
	cfg := c.conf()
	now := time.Now()
	if since.IsZero() {
		*since = now
	} else if now.Sub(*since) > cfg.BackendBusyTimeout {
		return false
	}
	nowNano := now.UnixNano()
	if nowNano-n.loadingAt.Load() < int64(c.holdWindow(cfg.BackendReadTimeout)) {
		return true
	}
	last := n.probeAt.Load()
	if nowNano-last < int64(max(cfg.BackendReadTimeout/4, loopTick)) || !n.probeAt.CompareAndSwap(last, nowNano) {
		return false
	}
	rep, err := c.probeReply(n.addr)
	if reason, ok := executingReply(rep); err == nil && ok && reason == "loading" {
		c.sawExecuting(n, reason)
		return true
	}
	return false
}

// notePause records the end of a CLIENT PAUSE the proxy fans out to every node (and
// forgets it on CLIENT UNPAUSE), so that the commands the nodes hold meanwhile wait for the
// pause to end instead of timing out.
func notePause(h handler) handler {
	return func(ss *session, r *request) bool {
		switch lowerName(r.args[1]) {
		case "pause":
			if len(r.args) == 3 || len(r.args) == 4 && (lowerName(r.args[3]) == "write" || lowerName(r.args[3]) == "all") {
				if ms, err := strconv.ParseInt(string(r.args[2]), 10, 64); err == nil && ms >= 0 && ms <= int64(ss.s.conf().BackendBusyTimeout/time.Millisecond) {
					ss.s.cl.pausedUntil.Store(time.Now().Add(time.Duration(ms) * time.Millisecond).UnixNano())
				}
			}
		case "unpause":
			ss.s.cl.pausedUntil.Store(0)
		}
		return h(ss, r)
	}
}

// execKill answers SCRIPT KILL and FUNCTION KILL: the command goes to every master on a
// new connection of its own (the loop's connection to the node running the script waits
// behind it; a busy node accepts connections and answers these commands on them), and the
// replies are merged into the one answer of a single Redis (mergeKillReplies).
func execKill(ss *session, r *request) []byte {
	m := ss.s.cl.smap.Load()
	if m == nil {
		return resp.ErrorReply("ERR proxy: " + ErrNoSlotMap.Error())
	}
	cmd := resp.AppendCommand(nil, r.args...)
	replies := make([][]byte, len(m.masters))
	var wg sync.WaitGroup
	for i, n := range m.masters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = ss.s.cl.oneShot(ss.ctx, n, cmd)
		}()
	}
	wg.Wait()
	return mergeKillReplies(replies)
}

// oneShot sends cmd to n on a new connection (closed afterwards) and returns the reply,
// or an error reply naming the node.
func (c *cluster) oneShot(ctx context.Context, n *node, cmd []byte) []byte {
	cfg := c.conf()
	ctx, cancel := context.WithTimeout(ctx, cfg.BackendConnectTimeout+2*cfg.BackendReadTimeout)
	defer cancel()
	conn, err := c.dialReady(ctx, n.addr)
	if err != nil {
		return resp.ErrorReply(fmt.Sprintf("ERR proxy: %v: %s unreachable: %v", ErrNotSent, n.addr, err))
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(cfg.BackendReadTimeout))
	rep, err := roundTrip(conn, cmd)
	if err != nil {
		return resp.ErrorReply(fmt.Sprintf("ERR proxy: %s: %v", n.addr, errBackendTimeout))
	}
	return rep
}

// mergeKillReplies merges the masters' replies to SCRIPT KILL or FUNCTION KILL into what a
// single Redis answers: OK when one killed its script; else UNKILLABLE (the script wrote),
// or BUSY (a function runs where SCRIPT KILL was sent, or the reverse: its text names the
// right command); NOTBUSY when no master runs one; otherwise the failure of a master that
// could not be asked (it may run the script).
func mergeKillReplies(replies [][]byte) []byte {
	for _, code := range []string{"+OK", "-UNKILLABLE", "-BUSY"} {
		for _, rep := range replies {
			if len(rep) > 0 && rep[0] == code[0] && errorCodeAny(rep, code[1:]) {
				return rep
			}
		}
	}
	for _, rep := range replies {
		if !errorCode(rep, "NOTBUSY") {
			return rep
		}
	}
	return replies[0]
}

// errorCodeAny reports whether the simple reply rep (error or status) starts with code.
func errorCodeAny(rep []byte, code string) bool {
	if len(rep) < len(code)+2 || !bytes.HasPrefix(rep[1:], []byte(code)) {
		return false
	}
	c := rep[1+len(code)]
	return c == ' ' || c == '\r'
}

// shutdownRefused refuses SHUTDOWN and says why: it would stop one node of the cluster,
// chosen by nobody. A node running a script that wrote (UNKILLABLE) is stopped with
// SHUTDOWN NOSAVE sent to that node directly.
var shutdownRefused = localHandler(func(ss *session, r *request) []byte {
	return resp.ErrorReply("ERR SHUTDOWN would stop one node of the cluster behind the proxy (to stop a node whose script " +
		"cannot be killed, UNKILLABLE, send SHUTDOWN NOSAVE to that node directly): not supported by the proxy")
})

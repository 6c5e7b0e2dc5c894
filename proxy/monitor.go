package proxy

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// MONITOR: the commands the proxy receives, streamed to every client in monitor mode in
// Redis 7's format (`+<unix seconds>.<µs> [0 <client address>] "arg" …`). The event loops
// pay one atomic load per read while no monitor is attached (lclient.process reads
// monitorHub.on once); with monitors attached each command shown is formatted once and
// queued to every monitor through its Pub/Sub message queue, bounded by
// client-output-buffer-limit-pubsub: a monitor that does not read is disconnected
// (client_output_limit_closed_total{class="monitor"}), not buffered without bound.
//
// Which commands are shown follows Redis 7.0's call(): commands the node table knows with
// a valid arity, not admin commands (CONFIG, CLIENT LIST/KILL, SLOWLOG, LATENCY, MONITOR
// …), nothing but AUTH and HELLO before authentication, AUTH and HELLO's AUTH arguments
// shown as "(redacted)". Commands are shown when the proxy receives them (a transaction's
// commands when they are queued, not when EXEC runs them); the commands a script runs on a
// node as the node's MONITOR shows them (monitor_nodes.go).

// monitorHub holds the sessions in monitor mode.
type monitorHub struct {
	on        atomic.Bool // a monitor is attached: the loops feed commands
	mu        sync.Mutex
	subs      []*session
	stopNodes func() // ends the node MONITOR connections (monitor_nodes.go)
}

// monitorAdd puts ss in monitor mode; the first monitor starts the node MONITOR
// connections (monitor_nodes.go) and waits for them, at most monitorNodeReady.
func (s *Server) monitorAdd(ss *session) {
	s.mon.mu.Lock()
	if ss.monitor.Swap(true) {
		s.mon.mu.Unlock()
		return
	}
	s.mon.subs = append(s.mon.subs, ss)
	s.mon.on.Store(true)
	s.metrics.monitors.Set(float64(len(s.mon.subs)))
	var ready <-chan struct{}
	if s.mon.stopNodes == nil {
		s.mon.stopNodes, ready = s.startNodeMonitors()
	}
	s.mon.mu.Unlock()
	if ready != nil {
		select { // MONITOR answers once script commands are shown too
		case <-ready:
		case <-time.After(monitorNodeReady):
		}
	}
}

// monitorRemove takes ss out of monitor mode (RESET, the client gone).
func (s *Server) monitorRemove(ss *session) {
	if !ss.monitor.Load() {
		return
	}
	s.mon.mu.Lock()
	defer s.mon.mu.Unlock()
	ss.monitor.Store(false)
	for i, m := range s.mon.subs {
		if m == ss {
			s.mon.subs = append(s.mon.subs[:i], s.mon.subs[i+1:]...)
			break
		}
	}
	s.mon.on.Store(len(s.mon.subs) > 0)
	if len(s.mon.subs) == 0 && s.mon.stopNodes != nil {
		s.mon.stopNodes()
		s.mon.stopNodes = nil
	}
	s.metrics.monitors.Set(float64(len(s.mon.subs)))
}

// monitorFeed shows one command of ss to the monitors (on the client's loop, or the slow
// path); authed is whether ss was authenticated when it sent it.
func (s *Server) monitorFeed(ss *session, authed bool, args [][]byte) {
	name := lowerName(args[0])
	if !monitorShown(s.cl.cmds.Load(), name, args, authed, ss.monitor.Load()) {
		return
	}
	_, addr := ss.slowlogClient()
	line := appendMonitorLine(nil, time.Now(), addr, name, args)
	s.mon.mu.Lock()
	for _, m := range s.mon.subs {
		if m != ss || name != "reset" { // RESET ends monitor mode before Redis shows it
			m.pushMonitor(line)
		}
	}
	s.mon.mu.Unlock()
	s.metrics.monitorLines.Inc()
}

// monitorShown reports whether Redis 7.0 would show the command to its monitors: it
// passed the checks before execution (known, arity, authentication, a monitor's keyed
// commands: monitorGate) and is not an admin command.
func monitorShown(tab *command.Table, name string, args [][]byte, authed, monitor bool) bool {
	if !authed && name != "auth" && name != "hello" {
		return false
	}
	info := tab.Cmds[name]
	if info == nil || info.Arity > 0 && len(args) != info.Arity || info.Arity < 0 && len(args) < -info.Arity {
		return false
	}
	flags := info.Flags
	if monitor && flags&(command.Readonly|command.Write) != 0 {
		return false
	}
	if info.Container && len(args) > 1 {
		f, ok := tab.Sub[name+"|"+lowerName(args[1])]
		if !ok {
			return false
		}
		flags = f
	}
	return flags&command.Admin == 0
}

// appendMonitorLine appends one monitor line (a RESP simple string) to dst.
func appendMonitorLine(dst []byte, at time.Time, addr, name string, args [][]byte) []byte {
	us := at.UnixMicro()
	dst = append(dst, '+')
	dst = strconv.AppendInt(dst, us/1e6, 10)
	dst = append(dst, '.')
	frac := strconv.AppendInt(nil, 1e6+us%1e6, 10) // six digits after a leading 1
	dst = append(dst, frac[1:]...)
	dst = append(dst, " [0 "...)
	dst = append(dst, addr...)
	dst = append(dst, ']')
	redactFrom := len(args)
	switch name {
	case "auth":
		redactFrom = 1
	case "hello":
		// HELLO [protover [AUTH username password] [SETNAME name]]: the two after AUTH.
		for i := 2; i+2 < len(args); i++ {
			if lowerName(args[i]) == "auth" {
				dst = appendMonitorArgs(dst, args[:i+1], len(args))
				dst = appendMonitorArgs(dst, args[i+1:i+3], 0)
				dst = appendMonitorArgs(dst, args[i+3:], len(args))
				return append(dst, "\r\n"...)
			}
		}
	}
	dst = appendMonitorArgs(dst, args, redactFrom)
	return append(dst, "\r\n"...)
}

// appendMonitorArgs appends ` "arg"` for each of args, quoted as Redis's sdscatrepr;
// those from index redactFrom on as "(redacted)".
func appendMonitorArgs(dst []byte, args [][]byte, redactFrom int) []byte {
	const hex = "0123456789abcdef"
	for i, a := range args {
		if i >= redactFrom {
			dst = append(dst, ` "(redacted)"`...)
			continue
		}
		dst = append(dst, ' ', '"')
		for _, c := range a {
			switch c {
			case '\\', '"':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, `\n`...)
			case '\r':
				dst = append(dst, `\r`...)
			case '\t':
				dst = append(dst, `\t`...)
			case '\a':
				dst = append(dst, `\a`...)
			case '\b':
				dst = append(dst, `\b`...)
			default:
				if c >= 0x20 && c < 0x7f {
					dst = append(dst, c)
				} else {
					dst = append(dst, '\\', 'x', hex[c>>4], hex[c&15])
				}
			}
		}
		dst = append(dst, '"')
	}
	return dst
}

// pushMonitor queues one monitor line for the client (a simple string in RESP2 and RESP3).
func (ss *session) pushMonitor(line []byte) {
	if ss.ctx.Err() != nil {
		return
	}
	ss.addOut(int64(len(line)))
	ss.pending.push(line)
}

// monitorCommand answers MONITOR: the session enters monitor mode (MONITOR inside MULTI is
// refused by the transaction stage, as Redis does).
func monitorCommand(ss *session, r *request) []byte {
	if len(r.args) != 1 {
		return wrongArgs("monitor")
	}
	ss.s.monitorAdd(ss)
	return replyOK
}

// replyMonitorKeyspace is Redis's answer to a monitor's command that has keys.
var replyMonitorKeyspace = resp.ErrorReply("ERR Replica can't interact with the keyspace")

// monitorGate refuses the keyed commands of a client in monitor mode, as Redis (a monitor
// is a replica to it); nil lets the command through.
func (ss *session) monitorGate(r *request) []byte {
	if !ss.monitor.Load() || r.info == nil || r.info.Flags&(command.Readonly|command.Write) == 0 {
		return nil
	}
	return replyMonitorKeyspace
}

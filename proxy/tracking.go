package proxy

import (
	"bytes"
	"strconv"
	"strings"
	"sync"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// Client-side caching (CLIENT TRACKING), with a single Redis's semantics over the whole
// cluster. The design (docs/architecture.md, "Client-side caching"):
//
//   - The proxy keeps its own bounded table key → ids of the clients that read it
//     (tracker.keys, tracking-table-max-keys; evicting a key sends its invalidation).
//   - It learns of every change on every master through one invalidation connection per
//     master (trackinv.go), in BCAST mode redirected to itself and subscribed to
//     __redis__:invalidate: the node reports every key written (by any client, expired or
//     evicted) and FLUSHALL/FLUSHDB as a null message. The proxy filters by its table.
//   - A tracking client leaves the fast path (refreshSimple): its commands run on the slow
//     path, which records the keys it reads before they are sent (no invalidation can be
//     missed between the read and the recording), and, before its reply is written, waits
//     until every invalidation connection has been read up to a PING sent after the reply
//     came back (tracker.sync): an invalidation of a write that completed before the
//     client's command precedes its reply, as on one Redis.
//   - Clients that never enable tracking pay one branch when their session state changes
//     (refreshSimple), nothing per command, and no invalidation connection exists until a
//     client enables tracking.

// trackState is one client's CLIENT TRACKING settings; nil in the session when tracking is
// off. Its fields are set when tracking is switched on; prefixes grow with CLIENT TRACKING
// on BCAST PREFIX … (under tracker.mu); caching belongs to the session's slow path.
type trackState struct {
	ss                           *session
	bcast, optin, optout, noloop bool
	redirect                     uint64   // 0: the client itself
	target                       *session // the REDIRECT client (nil: itself)
	prefixes                     []string
	caching                      int8 // CLIENT CACHING yes (1) / no (-1), for the next command
}

// invQueue holds the invalidation messages for a client while one of its commands runs:
// they are written just before its reply (trackAfter).
type invQueue struct {
	running bool // trackBefore ran for the command now on the slow path (its goroutine only)

	mu     sync.Mutex
	inCmd  bool
	frames []byte
	keys   map[string]bool // keys invalidated meanwhile (nil: none; flush: every key)
	flush  bool
}

const invalidateChannel = "__redis__:invalidate"

var (
	errTrackingRedirect = resp.ErrorReply("ERR The client ID you want redirect to does not exist")
	errTrackingPrefix   = resp.ErrorReply("ERR PREFIX option requires BCAST mode to be enabled")
	errTrackingOptBoth  = resp.ErrorReply("ERR You can't specify both OPTIN mode and OPTOUT mode")
	errTrackingOptBcast = resp.ErrorReply("ERR OPTIN and OPTOUT are not compatible with BCAST")
	errTrackingSwitchOp = resp.ErrorReply("ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.")
	errTrackingSwitchBc = resp.ErrorReply("ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.")
	errCachingMode      = resp.ErrorReply("ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled")
	errCachingYes       = resp.ErrorReply("ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.")
	errCachingNo        = resp.ErrorReply("ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.")
	errNotInteger       = resp.ErrorReply("ERR value is not an integer or out of range")
	errTrackingSyntax   = resp.ErrorReply("ERR syntax error")
)

// clientTracking answers CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p …] [BCAST] [OPTIN]
// [OPTOUT] [NOLOOP], with Redis 7's checks and errors.
func clientTracking(ss *session, r *request) []byte {
	args := r.args
	if len(args) < 3 {
		return wrongArgs("client|tracking")
	}
	var on bool
	switch lowerName(args[2]) {
	case "on":
		on = true
	case "off":
	default:
		return errTrackingSyntax
	}
	n := &trackState{ss: ss}
	for i := 3; i < len(args); i++ {
		more := i+1 < len(args)
		switch strings.ToLower(string(args[i])) {
		case "redirect":
			if !more {
				return errTrackingSyntax
			}
			i++
			id, err := strconv.ParseUint(string(args[i]), 10, 64)
			if err != nil {
				return errNotInteger
			}
			n.redirect = id
		case "bcast":
			n.bcast = true
		case "optin":
			n.optin = true
		case "optout":
			n.optout = true
		case "noloop":
			n.noloop = true
		case "prefix":
			if !more {
				return errTrackingSyntax
			}
			i++
			n.prefixes = append(n.prefixes, string(args[i]))
		default:
			return errTrackingSyntax
		}
	}
	t := ss.s.track
	if !on {
		t.disable(ss)
		return replyOK
	}
	if len(n.prefixes) > 0 && !n.bcast {
		return errTrackingPrefix
	}
	if n.optin && n.optout {
		return errTrackingOptBoth
	}
	if n.bcast && (n.optin || n.optout) {
		return errTrackingOptBcast
	}
	if old := ss.track; old != nil {
		if old.bcast != n.bcast {
			return errTrackingSwitchBc
		}
		if old.optin != n.optin || old.optout != n.optout {
			return errTrackingSwitchOp
		}
	}
	if err := checkPrefixes(n.prefixes, ss.track); err != nil {
		return err
	}
	if n.redirect == ss.id {
		n.target = ss // to itself: a RESP2 client that then subscribes to __redis__:invalidate
	} else if n.redirect != 0 {
		for _, o := range ss.s.allSessions() {
			if o.id == n.redirect {
				n.target = o
			}
		}
		if n.target == nil {
			return errTrackingRedirect
		}
	}
	t.enable(ss, n)
	return replyOK
}

// checkPrefixes refuses overlapping prefixes, as Redis does, among the new ones and those
// the client already has.
func checkPrefixes(prefixes []string, old *trackState) []byte {
	var have []string
	if old != nil {
		have = old.prefixes
	}
	for i, p := range prefixes {
		for _, q := range have {
			if p != q && (strings.HasPrefix(p, q) || strings.HasPrefix(q, p)) {
				return overlapErr(p, "an existing prefix", q)
			}
		}
		for _, q := range prefixes[i+1:] {
			if p != q && (strings.HasPrefix(p, q) || strings.HasPrefix(q, p)) {
				return overlapErr(p, "another provided prefix", q)
			}
		}
	}
	return nil
}

func overlapErr(p, which, q string) []byte {
	return resp.ErrorReply("ERR Prefix '" + p + "' overlaps with " + which + " '" + q + "'. Prefixes for a single client must not overlap.")
}

// clientCaching answers CLIENT CACHING YES|NO.
func clientCaching(ss *session, r *request) []byte {
	if len(r.args) != 3 {
		return wrongArgs("client|caching")
	}
	ts := ss.track
	var yes bool
	switch lowerName(r.args[2]) {
	case "yes":
		yes = true
	case "no":
	default:
		return errTrackingSyntax
	}
	switch {
	case ts == nil:
		return errCachingMode
	case yes && !ts.optin:
		return errCachingYes
	case !yes && !ts.optout:
		return errCachingNo
	}
	if yes {
		ts.caching = 1
	} else {
		ts.caching = -1
	}
	return replyOK
}

// clientGetredir answers CLIENT GETREDIR: -1 when tracking is off, 0 without REDIRECT.
func clientGetredir(ss *session, r *request) []byte {
	if len(r.args) != 2 {
		return wrongArgs("client|getredir")
	}
	ts := ss.track
	if ts == nil {
		return resp.AppendInt(nil, -1)
	}
	return resp.AppendInt(nil, int64(ts.redirect))
}

// clientTrackinginfo answers CLIENT TRACKINGINFO (RESP2 form; resp3.go makes it a map).
func clientTrackinginfo(ss *session, r *request) []byte {
	if len(r.args) != 2 {
		return wrongArgs("client|trackinginfo")
	}
	ts := ss.track
	var flags []string
	redirect := int64(-1)
	var prefixes []string
	if ts == nil {
		flags = []string{"off"}
	} else {
		flags = []string{"on"}
		if ts.bcast {
			flags = append(flags, "bcast")
		}
		if ts.optin {
			flags = append(flags, "optin")
			if ts.caching == 1 {
				flags = append(flags, "caching-yes")
			}
		}
		if ts.optout {
			flags = append(flags, "optout")
			if ts.caching == -1 {
				flags = append(flags, "caching-no")
			}
		}
		if ts.noloop {
			flags = append(flags, "noloop")
		}
		if ts.target != nil && ts.target.ctx.Err() != nil {
			flags = append(flags, "broken_redirect")
		}
		redirect = int64(ts.redirect)
		ss.s.track.mu.Lock()
		prefixes = append(prefixes, ts.prefixes...)
		ss.s.track.mu.Unlock()
	}
	out := resp.AppendArrayHeader(nil, 6)
	out = resp.AppendBulkString(out, "flags")
	out = resp.AppendArrayHeader(out, len(flags))
	for _, f := range flags {
		out = resp.AppendBulkString(out, f)
	}
	out = resp.AppendBulkString(out, "redirect")
	out = resp.AppendInt(out, redirect)
	out = resp.AppendBulkString(out, "prefixes")
	out = resp.AppendArrayHeader(out, len(prefixes))
	for _, p := range prefixes {
		out = resp.AppendBulkString(out, p)
	}
	return out
}

// trackingCommand answers the tracking subcommands of CLIENT (nil: not one of them).
func trackingCommand(ss *session, r *request, sub string) []byte {
	switch sub {
	case "tracking":
		return clientTracking(ss, r)
	case "caching":
		return clientCaching(ss, r)
	case "getredir":
		return clientGetredir(ss, r)
	case "trackinginfo":
		return clientTrackinginfo(ss, r)
	}
	return nil
}

// trackBefore runs on the slow path before a tracking client's command is sent: the keys
// it reads are recorded (before the read can reach a node: a change made after the read
// is always reported), a NOLOOP client's own writes are kept from invalidating it, and
// invalidations that arrive from now on wait for the command's reply (trackAfter).
func (ss *session) trackBefore(args [][]byte) {
	ts := ss.track
	if ts == nil || len(args) == 0 {
		return
	}
	ss.inv.running = true
	ss.inv.mu.Lock()
	ss.inv.inCmd = true
	// Messages queued for the loop before the command started (the loop does not write
	// them while a slow command runs) go out before its reply.
	for _, m := range ss.pending.takeMsgs() {
		ss.inv.frames = append(ss.inv.frames, m...)
	}
	ss.inv.mu.Unlock()
	name := lowerName(args[0])
	if name == "client" {
		return // as Redis: CLIENT … keeps a CLIENT CACHING for the next command
	}
	caching := ts.caching
	if name != "multi" && (!ss.tx.inMulti || name == "exec" || name == "discard") {
		ts.caching = 0 // CLIENT CACHING applies to the next command (a transaction: EXEC)
	}
	if ts.bcast || ss.tx.inMulti && name != "exec" {
		return
	}
	if ts.optin && caching != 1 || ts.optout && caching == -1 {
		return
	}
	t := ss.s.track
	cmds := ss.s.cl.cmds.Load()
	var reads, writes [][]byte
	collect := func(args [][]byte) {
		info := cmds.Lookup(args[0])
		if info == nil {
			return
		}
		switch info.Name {
		case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro":
			// The keys a script declares: a superset of those its reads touch.
			if len(args) > 2 {
				if nk, err := strconv.Atoi(string(args[2])); err == nil && nk > 0 && 3+nk <= len(args) {
					reads = append(reads, args[3:3+nk]...)
				}
			}
			return
		}
		var buf [16]int
		idx, _ := info.KeyIndexes(args, buf[:0])
		for _, i := range idx {
			if info.Flags&command.Readonly != 0 {
				reads = append(reads, args[i])
			} else if info.Flags&command.Write != 0 {
				writes = append(writes, args[i])
			}
		}
	}
	if name == "exec" {
		for _, q := range ss.tx.queued {
			collect(q)
		}
	} else {
		collect(args)
	}
	if ts.noloop && len(writes) > 0 {
		t.forget(ss.id, writes)
	}
	if len(reads) > 0 {
		t.add(ss.id, reads)
	}
}

// trackAfter runs on the slow path once a tracking client's command (or a command of a
// client that others redirect their invalidations to, while it tracks itself) has its
// reply: it waits until the invalidation connections have delivered everything the nodes
// sent before the reply (tracker.sync), then returns the reply preceded by the
// invalidations queued meanwhile. A key the command read that was invalidated meanwhile
// is invalidated once more after the reply: the change may have come after the read.
func (ss *session) trackAfter(r *request, reply []byte) []byte {
	ss.inv.running = false
	ss.s.track.sync(ss.ctx)
	q := &ss.inv
	q.mu.Lock()
	frames, keys, flush := q.frames, q.keys, q.flush
	q.frames, q.keys, q.flush, q.inCmd = nil, nil, false, false
	q.mu.Unlock()
	if len(frames) == 0 {
		return reply
	}
	ss.releaseOut(int64(len(frames)))
	out := append(frames, reply...)
	if ss.track != nil && !ss.track.bcast && !flush && len(keys) > 0 && len(r.args) > 0 {
		var again [][]byte
		var buf [16]int
		cmds := ss.s.cl.cmds.Load()
		if info := cmds.Lookup(r.args[0]); info != nil && info.Flags&command.Readonly != 0 {
			idx, _ := info.KeyIndexes(r.args, buf[:0])
			for _, i := range idx {
				if keys[string(r.args[i])] {
					again = append(again, r.args[i])
				}
			}
		}
		if len(again) > 0 {
			ss.s.track.add(ss.id, again) // still tracked: it stays cached
			out = append(out, invalidationFrame(ss.resp3.Load(), again)...)
		}
	}
	return out
}

// invalidationFrame renders an invalidation message: a RESP3 push, or a RESP2 message on
// __redis__:invalidate (keys nil: the null message, flush everything), as Redis 7 sends.
func invalidationFrame(resp3 bool, keys [][]byte) []byte {
	var out []byte
	if resp3 {
		out = append(out, ">2\r\n$10\r\ninvalidate\r\n"...)
	} else {
		out = append(out, "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n"...)
	}
	if keys == nil {
		if resp3 {
			return append(out, "_\r\n"...)
		}
		return append(out, "$-1\r\n"...)
	}
	out = resp.AppendArrayHeader(out, len(keys))
	for _, k := range keys {
		out = resp.AppendBulk(out, k)
	}
	return out
}

// redirBrokenFrame is the push a RESP3 client gets when its REDIRECT client is gone.
func redirBrokenFrame(id uint64) []byte {
	out := append([]byte(nil), ">2\r\n$20\r\ntracking-redir-broken\r\n"...)
	return resp.AppendInt(out, int64(id))
}

// subscribedToInvalidate reports whether a RESP2 session subscribed to
// __redis__:invalidate (where Redis sends a REDIRECT target its messages).
func (ss *session) subscribedToInvalidate() bool {
	ps := ss.ps
	if ps == nil {
		return false
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.channels[invalidateChannel]
}

// hasPrefix reports whether key starts with one of prefixes (none: every key).
func hasPrefix(key []byte, prefixes []string) bool {
	if len(prefixes) == 0 {
		return true
	}
	for _, p := range prefixes {
		if bytes.HasPrefix(key, []byte(p)) {
			return true
		}
	}
	return false
}

// trackingSubcommand reports whether args is CLIENT TRACKING or CLIENT CACHING: inside
// MULTI they are refused (the transaction runs on a node connection, which must not start
// tracking; the proxy's tracking state is not part of the transaction).
func trackingSubcommand(args [][]byte) bool {
	if len(args) < 2 || lowerName(args[0]) != "client" {
		return false
	}
	sub := lowerName(args[1])
	return sub == "tracking" || sub == "caching"
}

package proxy

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// Handler combinators of the commands table (dispatch.go): answered locally, run in the
// slow path with session state, behind a configuration switch, by subcommand, and fanned
// out to every master or every node with the merges of their replies.

// rememberScript records a SCRIPT LOAD body for NOSCRIPT recovery.
func rememberScript(h handler) handler {
	return func(ss *session, r *request) bool {
		if len(r.args) == 3 {
			ss.s.scripts.remember(r.args[2])
		}
		return h(ss, r)
	}
}

// forgetScripts clears the proxy's script memory on SCRIPT FLUSH: a flushed script must
// give NOSCRIPT, not be reloaded behind the client's back.
func forgetScripts(h handler) handler {
	return func(ss *session, r *request) bool {
		ss.s.scripts.flush()
		return h(ss, r)
	}
}

func execHandler(f func(ss *session, r *request) []byte) handler {
	return func(ss *session, r *request) bool {
		r.exec, r.barrier = f, true
		return true
	}
}

func localHandler(f func(ss *session, r *request) []byte) handler {
	return func(ss *session, r *request) bool {
		r.reply, r.local = f(ss, r), true
		r.done <- struct{}{}
		return true
	}
}

func guarded(enabled func(*Config) bool, key string, h handler) handler {
	return func(ss *session, r *request) bool {
		if !enabled(ss.s.conf()) {
			return localHandler(func(ss *session, r *request) []byte {
				return resp.ErrorReply(fmt.Sprintf("ERR %s is disabled by the proxy (set %s yes)", strings.ToUpper(string(r.args[0])), key))
			})(ss, r)
		}
		return h(ss, r)
	}
}

func subcommands(m map[string]handler) handler {
	return func(ss *session, r *request) bool {
		if len(r.args) < 2 {
			return false
		}
		if h, ok := m[lowerName(r.args[1])]; ok {
			return h(ss, r)
		}
		return false
	}
}

// fanout sends the command to every master in parallel and merges the replies. A node
// that fails is named in the error.
func fanout(merge func(parts []*request, replies [][]byte) []byte) handler {
	return func(ss *session, r *request) bool {
		m := ss.s.cl.smap.Load()
		if m == nil {
			return false
		}
		fanoutTo(ss, r, m.masters, r.args, merge)
		return true
	}
}

// nodeError returns the first error among replies, naming its node.
func nodeError(parts []*request, replies [][]byte) []byte {
	var failed []string
	var first []byte
	for i, rep := range replies {
		if len(rep) > 0 && rep[0] == '-' {
			failed = append(failed, parts[i].pinned.addr)
			if first == nil {
				first = rep
			}
		}
	}
	if first == nil {
		return nil
	}
	if len(failed) == len(parts) {
		all := true
		for _, rep := range replies {
			all = all && bytes.Equal(rep, first)
		}
		if all { // every master gave the same answer: it is the answer
			return first
		}
	}
	msg := strings.TrimSpace(string(first[1:]))
	if strings.HasPrefix(msg, "ERR proxy: ") {
		msg = strings.TrimPrefix(msg, "ERR proxy: ")
	}
	return resp.ErrorReply(fmt.Sprintf("ERR proxy: failed on %d of %d masters (%s): %s", len(failed), len(parts), strings.Join(failed, ", "), msg))
}

func mergeNodeSum(parts []*request, replies [][]byte) []byte {
	if e := nodeError(parts, replies); e != nil {
		return e
	}
	return mergeSum(nil, replies, 0)
}

func mergeNodeAllOK(parts []*request, replies [][]byte) []byte {
	if e := nodeError(parts, replies); e != nil {
		return e
	}
	return replyOK
}

// mergeNodeSame returns the common reply (e.g. the SHA of SCRIPT LOAD).
func mergeNodeSame(parts []*request, replies [][]byte) []byte {
	if e := nodeError(parts, replies); e != nil {
		return e
	}
	for _, rep := range replies[1:] {
		if !bytes.Equal(rep, replies[0]) {
			return resp.ErrorReply("ERR proxy: masters disagree")
		}
	}
	return replies[0]
}

func mergeNodeFirst(parts []*request, replies [][]byte) []byte {
	if e := nodeError(parts, replies); e != nil {
		return e
	}
	return replies[0]
}

// mergeNodeConcat concatenates array replies (KEYS).
func mergeNodeConcat(parts []*request, replies [][]byte) []byte {
	if e := nodeError(parts, replies); e != nil {
		return e
	}
	var all [][]byte
	for _, rep := range replies {
		elems, ok := resp.SplitArray(rep)
		if !ok {
			return resp.ErrorReply("ERR proxy: unexpected reply from a cluster node")
		}
		all = append(all, elems...)
	}
	out := resp.AppendArrayHeader(nil, len(all))
	for _, e := range all {
		out = append(out, e...)
	}
	return out
}

// mergeNodeAnd combines SCRIPT EXISTS replies: a script exists only if every master has it.
func mergeNodeAnd(parts []*request, replies [][]byte) []byte {
	if e := nodeError(parts, replies); e != nil {
		return e
	}
	var res []bool
	for i, rep := range replies {
		elems, ok := resp.SplitArray(rep)
		if !ok || i > 0 && len(elems) != len(res) {
			return resp.ErrorReply("ERR proxy: unexpected reply from a cluster node")
		}
		if i == 0 {
			res = make([]bool, len(elems))
			for j := range res {
				res[j] = true
			}
		}
		for j, e := range elems {
			res[j] = res[j] && string(e) == ":1\r\n"
		}
	}
	out := resp.AppendArrayHeader(nil, len(res))
	for _, v := range res {
		if v {
			out = resp.AppendInt(out, 1)
		} else {
			out = resp.AppendInt(out, 0)
		}
	}
	return out
}

// SCAN walks the cluster by slot with one cursor that stays a plain unsigned integer, as
// clients expect. The cursor holds a slot boundary S (every slot below S is done), the
// cursor of the node N that owns S, and a hash of the slots N owned when its scan began.
// When N's own scan ends, the boundary moves past the run of slots from S on that N still
// owns, with no migration open, and owned throughout (same hash): keys there existed on N
// for its whole scan, so Redis's SCAN guarantee covers them. Otherwise (a slot moved in or
// out, the map was stale) N is scanned again. Keys may be returned more than once, never
// skipped; a master whose slots are not contiguous is scanned once per run.
const (
	scanSlotBits = 15 // S+1 (cursor 0 starts at slot 0)
	scanHashBits = 17
	scanNodeBits = 64 - scanSlotBits - scanHashBits
)

// everyNode returns the masters and their replicas, each once.
func (m *slotMap) everyNode() []*node {
	seen := map[*node]bool{}
	var out []*node
	add := func(n *node) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for i, n := range m.masters {
		add(n)
		for _, rn := range m.replicas[i] {
			add(rn)
		}
	}
	return out
}

// fanoutTo sends args to each of nodes in parallel and merges the replies in finish.
func fanoutTo(ss *session, r *request, nodes []*node, args [][]byte, merge func(parts []*request, replies [][]byte) []byte) {
	raw := resp.AppendCommand(nil, args...)
	parts := make([]*request, len(nodes))
	for i, n := range nodes {
		parts[i] = &request{info: r.info, args: args, raw: raw, slot: -1, pinned: n, done: make(chan struct{}, 1), start: r.start}
		ss.dispatch(parts[i])
	}
	r.parts = parts
	r.merge = func(replies [][]byte) []byte { return merge(parts, replies) }
}

// fanoutEveryNode sends the command to every node, masters and replicas.
func fanoutEveryNode(merge func(parts []*request, replies [][]byte) []byte) func(ss *session, r *request) bool {
	return func(ss *session, r *request) bool {
		m := ss.s.cl.smap.Load()
		if m == nil {
			return false
		}
		fanoutTo(ss, r, m.everyNode(), r.args, merge)
		return true
	}
}

// nodesError returns nil when every reply satisfies ok; the common error when every node
// gave the same one (it is Redis's answer, e.g. to a bad argument); otherwise an error
// naming the nodes that did not agree.
func nodesError(parts []*request, replies [][]byte, ok func([]byte) bool) []byte {
	var failed []string
	var first []byte
	same := true
	for i, rep := range replies {
		if ok(rep) {
			continue
		}
		failed = append(failed, parts[i].pinned.addr)
		if first == nil {
			first = rep
		} else if !bytes.Equal(rep, first) {
			same = false
		}
	}
	if first == nil {
		return nil
	}
	if len(failed) == len(parts) && same && first[0] == '-' {
		return first
	}
	msg := strings.TrimSpace(string(first))
	if msg != "" && msg[0] == '-' {
		msg = strings.TrimPrefix(msg[1:], "ERR proxy: ")
	}
	return resp.ErrorReply(fmt.Sprintf("ERR proxy: %d of %d nodes did not agree (%s): %s", len(failed), len(parts), strings.Join(failed, ", "), msg))
}

func isOK(rep []byte) bool { return bytes.Equal(rep, replyOK) }

func isInt(rep []byte) bool { return len(rep) > 0 && rep[0] == ':' }

func mergeNodesOK(parts []*request, replies [][]byte) []byte {
	if e := nodesError(parts, replies, isOK); e != nil {
		return e
	}
	return replyOK
}

func mergeNodesSum(parts []*request, replies [][]byte) []byte {
	if e := nodesError(parts, replies, isInt); e != nil {
		return e
	}
	return mergeSum(nil, replies, 0)
}

package proxy

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"
)

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
				return errorReply(fmt.Sprintf("ERR %s is disabled by the proxy (set %s yes)", strings.ToUpper(string(r.args[0])), key))
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
		parts := make([]*request, len(m.masters))
		for i, n := range m.masters {
			parts[i] = &request{info: r.info, args: r.args, raw: r.raw, slot: -1, pinned: n, done: make(chan struct{}, 1), start: r.start}
			ss.dispatch(parts[i])
		}
		r.parts = parts
		r.merge = func(replies [][]byte) []byte { return merge(parts, replies) }
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
	return errorReply(fmt.Sprintf("ERR proxy: failed on %d of %d masters (%s): %s", len(failed), len(parts), strings.Join(failed, ", "), msg))
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
			return errorReply("ERR proxy: masters disagree")
		}
	}
	return replies[0]
}

// mergeKill combines SCRIPT KILL / FUNCTION KILL: the script runs on one master; OK if
// one of them killed it, else a node's error (NOTBUSY when none runs one).
func mergeKill(_ []*request, replies [][]byte) []byte {
	for _, rep := range replies {
		if bytes.Equal(rep, replyOK) {
			return rep
		}
	}
	for _, rep := range replies {
		if !bytes.HasPrefix(rep, []byte("-NOTBUSY")) {
			return rep // e.g. UNKILLABLE
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
		elems, ok := splitArray(rep)
		if !ok {
			return errorReply("ERR proxy: unexpected reply from a cluster node")
		}
		all = append(all, elems...)
	}
	out := appendArrayHeader(nil, len(all))
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
		elems, ok := splitArray(rep)
		if !ok || i > 0 && len(elems) != len(res) {
			return errorReply("ERR proxy: unexpected reply from a cluster node")
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
	out := appendArrayHeader(nil, len(res))
	for _, v := range res {
		if v {
			out = appendInt(out, 1)
		} else {
			out = appendInt(out, 0)
		}
	}
	return out
}

// callNode sends args to node n and waits for the final reply.
func (ss *session) callNode(n *node, args ...[]byte) []byte {
	r := &request{args: args, raw: appendCommand(nil, args...), slot: -1, pinned: n, start: time.Now()}
	return ss.call(r)
}

func execRandomKey(ss *session, r *request) []byte {
	m := ss.s.cl.smap.Load()
	if m == nil {
		return errorReply("ERR proxy: " + ErrNoSlotMap.Error())
	}
	start := int(time.Now().UnixNano() % int64(len(m.masters)))
	for i := range m.masters {
		rep := ss.callNode(m.masters[(start+i)%len(m.masters)], r.args...)
		if !bytes.Equal(rep, replyNil) {
			return rep
		}
	}
	return replyNil
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

// nodeSlots is a node's own view of the slots it serves (from CLUSTER NODES, myself line).
type nodeSlots struct {
	owns   [NumSlots]bool
	moving [NumSlots]bool // migrating out or importing in
	hash   uint64
}

func parseMyself(text string) (*nodeSlots, bool) {
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.Contains(f[2], "myself") {
			continue
		}
		ns := &nodeSlots{}
		h := fnv.New64a()
		for _, tok := range f[8:] {
			h.Write([]byte(tok))
			h.Write([]byte{' '})
			if strings.HasPrefix(tok, "[") {
				n, _, _ := strings.Cut(strings.TrimPrefix(tok, "["), "-")
				if s, err := strconv.Atoi(n); err == nil && s >= 0 && s < NumSlots {
					ns.moving[s] = true
				}
				continue
			}
			lo, hi, rng := strings.Cut(tok, "-")
			a, err1 := strconv.Atoi(lo)
			b := a
			var err2 error
			if rng {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 != nil || err2 != nil || a < 0 || b >= NumSlots || a > b {
				return nil, false
			}
			for s := a; s <= b; s++ {
				ns.owns[s] = true
			}
		}
		ns.hash = h.Sum64() & (1<<scanHashBits - 1)
		return ns, true
	}
	return nil, false
}

// nodeView asks n for its own slots.
func (ss *session) nodeView(n *node) (*nodeSlots, []byte) {
	rep := ss.callNode(n, []byte("CLUSTER"), []byte("NODES"))
	text, ok := bulkValue(rep)
	if !ok {
		if len(rep) > 0 && rep[0] == '-' {
			return nil, rep
		}
		return nil, errorReply("ERR proxy: unexpected CLUSTER NODES reply from " + n.addr)
	}
	ns, ok := parseMyself(text)
	if !ok {
		return nil, errorReply("ERR proxy: cannot parse CLUSTER NODES from " + n.addr)
	}
	return ns, nil
}

func scanReply(cursor uint64, elems []byte) []byte {
	b := appendArrayHeader(nil, 2)
	b = appendBulkString(b, strconv.FormatUint(cursor, 10))
	if elems == nil {
		return appendArrayHeader(b, 0)
	}
	return append(b, elems...)
}

func execScan(ss *session, r *request) []byte {
	if len(r.args) < 2 {
		return wrongArgs("scan")
	}
	cur, err := strconv.ParseUint(string(r.args[1]), 10, 64)
	if err != nil {
		return errorReply("ERR invalid cursor")
	}
	slot, hash, nodeCur := 0, uint64(0), uint64(0)
	if cur != 0 {
		f := int(cur & (1<<scanSlotBits - 1))
		if f == 0 || f > NumSlots {
			return errorReply("ERR invalid cursor")
		}
		slot = f - 1
		hash = (cur >> scanSlotBits) & (1<<scanHashBits - 1)
		nodeCur = cur >> (scanSlotBits + scanHashBits)
	}
	m := ss.s.cl.smap.Load()
	if m == nil {
		return errorReply("ERR proxy: " + ErrNoSlotMap.Error())
	}
	n := m.master(slot)
	same := uint64(slot + 1) // this slot again, from the start of its owner's scan
	if nodeCur == 0 {
		ns, e := ss.nodeView(n)
		if e != nil {
			return e
		}
		if !ns.owns[slot] {
			// Stale map: nothing scanned; come back when it is refreshed.
			ss.s.cl.requestRefresh(refreshMoved)
			ss.sleep(ss.s.conf().TryagainBackoff)
			return scanReply(same, nil)
		}
		hash = ns.hash
	}
	args := append([][]byte{r.args[0], []byte(strconv.FormatUint(nodeCur, 10))}, r.args[2:]...)
	rep := ss.callNode(n, args...)
	elems, ok := splitArray(rep)
	if !ok || len(elems) != 2 {
		if len(rep) > 0 && rep[0] == '-' {
			return rep
		}
		return errorReply("ERR proxy: unexpected SCAN reply")
	}
	nextStr, ok := bulkValue(elems[0])
	if !ok {
		return errorReply("ERR proxy: unexpected SCAN reply")
	}
	next, err := strconv.ParseUint(nextStr, 10, 64)
	if err != nil || next >= 1<<scanNodeBits {
		return errorReply("ERR proxy: node cursor out of range")
	}
	if next != 0 {
		return scanReply(next<<(scanSlotBits+scanHashBits)|hash<<scanSlotBits|uint64(slot+1), elems[1])
	}
	// n's scan is complete: move the boundary past what it owned throughout.
	ns, e := ss.nodeView(n)
	if e != nil {
		return e
	}
	if ns.hash != hash {
		ss.s.cl.requestRefresh(refreshMoved)
		return scanReply(same, elems[1])
	}
	end := slot
	for end < NumSlots && ns.owns[end] && !ns.moving[end] {
		end++
	}
	switch {
	case end == NumSlots:
		return scanReply(0, elems[1])
	case end == slot:
		// slot itself is migrating: its keys may be on either side; scan again.
		ss.sleep(ss.s.conf().TryagainBackoff)
		return scanReply(same, elems[1])
	}
	return scanReply(uint64(end+1), elems[1])
}

// bulkValue returns the string in a bulk string reply.
func bulkValue(b []byte) (string, bool) {
	if len(b) < 4 || b[0] != '$' {
		return "", false
	}
	i := bytes.IndexByte(b, '\n')
	if i < 0 || i+1 > len(b)-2 {
		return "", false // nil bulk
	}
	return string(b[i+1 : len(b)-2]), true
}

package proxy

import (
	"bytes"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// SCAN and RANDOMKEY over the whole cluster: SCAN walks the slots' owners in slot order (its
// cursor encodes a slot, the owner's view and the owner's own cursor), and the node views
// (CLUSTER NODES myself) both need.

// callNode sends args to node n and waits for the final reply.
func (ss *session) callNode(n *node, args ...[]byte) []byte {
	r := &request{args: args, raw: resp.AppendCommand(nil, args...), slot: -1, pinned: n, start: time.Now()}
	return ss.call(r)
}

func execRandomKey(ss *session, r *request) []byte {
	m := ss.s.cl.smap.Load()
	if m == nil {
		return resp.ErrorReply("ERR proxy: " + ErrNoSlotMap.Error())
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

// nodeSlots is a node's own view of the slots it serves (from CLUSTER NODES, myself line).
type nodeSlots struct {
	owns   [command.NumSlots]bool
	moving [command.NumSlots]bool // migrating out or importing in
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
				if s, err := strconv.Atoi(n); err == nil && s >= 0 && s < command.NumSlots {
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
			if err1 != nil || err2 != nil || a < 0 || b >= command.NumSlots || a > b {
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
		return nil, resp.ErrorReply("ERR proxy: unexpected CLUSTER NODES reply from " + n.addr)
	}
	ns, ok := parseMyself(text)
	if !ok {
		return nil, resp.ErrorReply("ERR proxy: cannot parse CLUSTER NODES from " + n.addr)
	}
	return ns, nil
}

func scanReply(cursor uint64, elems []byte) []byte {
	b := resp.AppendArrayHeader(nil, 2)
	b = resp.AppendBulkString(b, strconv.FormatUint(cursor, 10))
	if elems == nil {
		return resp.AppendArrayHeader(b, 0)
	}
	return append(b, elems...)
}

func execScan(ss *session, r *request) []byte {
	if len(r.args) < 2 {
		return wrongArgs("scan")
	}
	cur, err := strconv.ParseUint(string(r.args[1]), 10, 64)
	if err != nil {
		return resp.ErrorReply("ERR invalid cursor")
	}
	slot, hash, nodeCur := 0, uint64(0), uint64(0)
	if cur != 0 {
		f := int(cur & (1<<scanSlotBits - 1))
		if f == 0 || f > command.NumSlots {
			return resp.ErrorReply("ERR invalid cursor")
		}
		slot = f - 1
		hash = (cur >> scanSlotBits) & (1<<scanHashBits - 1)
		nodeCur = cur >> (scanSlotBits + scanHashBits)
	}
	m := ss.s.cl.smap.Load()
	if m == nil {
		return resp.ErrorReply("ERR proxy: " + ErrNoSlotMap.Error())
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
	elems, ok := resp.SplitArray(rep)
	if !ok || len(elems) != 2 {
		if len(rep) > 0 && rep[0] == '-' {
			return rep
		}
		return resp.ErrorReply("ERR proxy: unexpected SCAN reply")
	}
	nextStr, ok := bulkValue(elems[0])
	if !ok {
		return resp.ErrorReply("ERR proxy: unexpected SCAN reply")
	}
	next, err := strconv.ParseUint(nextStr, 10, 64)
	if err != nil || next >= 1<<scanNodeBits {
		return resp.ErrorReply("ERR proxy: node cursor out of range")
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
	for end < command.NumSlots && ns.owns[end] && !ns.moving[end] {
		end++
	}
	switch {
	case end == command.NumSlots:
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

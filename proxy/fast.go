package proxy

import (
	"bytes"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// fastKind says how the loop serves a command without the slow path.
type fastKind uint8

const (
	fkKeyed fastKind = iota + 1 // routed to the owner of its keys' slot (0: no kind)
	fkPing
	fkEcho
	fkSum   // multi-key, integer replies summed (DEL, UNLINK, EXISTS, TOUCH)
	fkAllOK // multi-key, +OK when every part is (MSET)
	fkMGET  // multi-key, values in key order
	// a blocking command, sent on a private connection of the loop (private.go)
	fkBlocking
)

// fastCmd is an entry of the fast table.
type fastCmd struct {
	kind  fastKind
	info  *command.Info
	label string
	group int // multi-key: arguments per key
}

// slowOnly are commands with keys that need the slow path although they are not in the
// commands table (dispatch.go): Pub/Sub, script recovery, key positions found by parsing.
var slowOnly = map[string]bool{
	"eval": true, "evalsha": true, "eval_ro": true, "evalsha_ro": true, "fcall": true, "fcall_ro": true,
	"subscribe": true, "psubscribe": true, "ssubscribe": true, "unsubscribe": true, "punsubscribe": true,
	"sunsubscribe": true, "migrate": true, "object": true, "xinfo": true, "xgroup": true, "memory": true,
}

// buildFastTable derives the fast table from the command table.
func buildFastTable(t *command.Table) map[string]*fastCmd {
	m := map[string]*fastCmd{}
	for name, info := range t.Cmds {
		if _, h := commands[name]; h || slowOnly[name] {
			continue
		}
		if info.Flags&command.Blocking != 0 && (info.First > 0 || info.Flags&command.MovableKeys != 0) {
			m[name] = &fastCmd{kind: fkBlocking, info: info, label: info.Name}
			continue
		}
		if info.Flags&(command.Blocking|command.MovableKeys) != 0 || info.First <= 0 {
			continue
		}
		m[name] = &fastCmd{kind: fkKeyed, info: info, label: info.Name}
	}
	for name, mk := range multiKeyCmds {
		if info := t.Cmds[name]; info != nil {
			m[name] = &fastCmd{kind: mk.merge, info: info, label: info.Name, group: mk.group}
		}
	}
	for name, kind := range map[string]fastKind{"ping": fkPing, "echo": fkEcho} {
		fc := &fastCmd{kind: kind, label: "other"}
		if info := t.Cmds[name]; info != nil {
			fc.info, fc.label = info, info.Name
		}
		m[name] = fc
	}
	return m
}

// fastLookup finds the fast-table entry of a command name, case-insensitively, without
// allocating.
func (s *Server) fastLookup(name []byte) *fastCmd {
	var buf [32]byte
	return (*s.fast.Load())[string(command.Lower(buf[:], name))]
}

// fastLookup is Server.fastLookup with a one-entry cache: a pipeline mostly repeats one
// command.
func (l *loop) fastLookup(name []byte) *fastCmd {
	t := l.s.fast.Load()
	if t == l.lastTable && bytes.Equal(name, l.lastName) {
		return l.lastFC
	}
	fc := l.s.fastLookup(name)
	l.lastTable, l.lastName, l.lastFC = t, append(l.lastName[:0], name...), fc
	return fc
}

// dispatch serves one command of a loop client. It reports false, and does nothing, when
// the command must wait until the client's earlier commands are answered (ordered).
func (c *lclient) dispatch(args [][]byte, raw []byte) bool {
	callPanicHook("loop", args)
	l := c.l
	s := l.s
	var fc *fastCmd
	if c.simple && raw != nil {
		fc = l.fastLookup(args[0])
	}
	if fc == nil || len(*s.deny.Load()) > 0 && s.isDenied(args[0]) || c.resp3 && resp3Shape(args, nil) != nil {
		// A RESP3 client stays on the fast path for replies that differ from RESP2 by
		// their nulls only; maps, sets and doubles are re-encoded on the slow path.
		return c.slow(args, raw)
	}
	switch fc.kind {
	case fkPing:
		switch len(args) {
		case 1:
			c.localReply(fc, replyPong)
		case 2:
			l.scratch = resp.AppendBulk(l.scratch[:0], args[1])
			c.localReply(fc, l.scratch)
		default:
			return c.slow(args, raw)
		}
	case fkEcho:
		if len(args) != 2 {
			return c.slow(args, raw)
		}
		l.scratch = resp.AppendBulk(l.scratch[:0], args[1])
		c.localReply(fc, l.scratch)
	case fkKeyed:
		return c.sendKeyed(fc, args, raw)
	case fkBlocking:
		return c.sendBlocking(fc, args, raw)
	default:
		return c.sendMulti(fc, args, raw)
	}
	return true
}

// slow runs a command on the slow path once every earlier command of the client is
// answered: the slow path uses its own connections, so a command sent there could reach a
// node before one still waiting in the loop's buffer for the same node.
func (c *lclient) slow(args [][]byte, raw []byte) bool {
	if c.fifo.len() > 0 {
		return false
	}
	c.runSlow(args, raw)
	return true
}

// ordered reports whether a command for slot, routed by m, cannot overtake an earlier
// command of the client (routeOrder); if not, it waits until they are answered.
func (c *lclient) ordered(m *slotMap, slot int) bool {
	if len(c.l.parked) > 0 && c.fifo.len() > 0 && c.l.parkedNode(m.master(slot)) {
		return false // busypark.go: not past commands waiting behind a script
	}
	return c.order.admit(m, slot, c.fifo.len() == 0)
}

// localReply answers a command on the loop.
func (c *lclient) localReply(fc *fastCmd, rep []byte) {
	r := c.l.getReq(c)
	r.label = fc.label
	c.fifo.push(r)
	c.account(r, rep)
	c.deliver(r, rep)
}

// target returns the node that serves slot for info now (nil: let the slow path decide),
// and false when the command must wait for the client's earlier ones (ordered).
func (c *lclient) target(slot int, info *command.Info) (*node, bool) {
	m := c.l.s.cl.smap.Load()
	if m == nil {
		return nil, true
	}
	if !c.ordered(m, slot) {
		return nil, false
	}
	return c.pick(m, slot, info), true
}

// pick returns the node of m that serves slot for info (read-from), nil if none may.
func (c *lclient) pick(m *slotMap, slot int, info *command.Info) *node {
	return m.nodeFor(slot, info, c.l.s.conf().ReadFrom, c.ss.id)
}

func (c *lclient) sendKeyed(fc *fastCmd, args [][]byte, raw []byte) bool {
	l := c.l
	info := fc.info
	idx, _ := info.KeyIndexes(args, l.keyIdx[:])
	if len(idx) == 0 {
		return c.slow(args, raw)
	}
	slot, cross := command.KeysSlot(args, idx)
	if cross {
		c.localReply(fc, errCrossSlot)
		return true
	}
	n, ok := c.target(slot, info)
	if !ok {
		return false
	}
	if n == nil {
		return c.slow(args, raw)
	}
	l.observeHot(args[info.First])
	r := l.getReq(c)
	r.info, r.label, r.slot, r.resp3 = info, fc.label, slot, c.resp3
	l.keepRaw(r, raw)
	c.fifo.push(r)
	c.send(r, n)
	return true
}

// send queues r (or a part) for n, or behind the client's redirections being resolved.
func (c *lclient) send(r *lreq, n *node) {
	if c.resolving > 0 {
		c.resolveSlow(r, nil, errBehind)
		return
	}
	if r.info.Flags&command.Write != 0 && !c.wroteTo(n) {
		c.ss.wrote(n)
	}
	c.l.backend(n).enqueue(r)
}

// sendMulti splits a multi-key command by slot: one part per slot, sent in parallel,
// merged in key order when the last part is answered.
func (c *lclient) sendMulti(fc *fastCmd, args [][]byte, raw []byte) bool {
	l := c.l
	group := fc.group
	if len(args) < 1+group || (len(args)-1)%group != 0 {
		return c.slow(args, raw) // wrong arity: a node answers
	}
	nkeys := (len(args) - 1) / group
	slots := l.slotBuf[:0]
	same := true
	for k := 0; k < nkeys; k++ {
		slots = append(slots, command.KeySlot(args[1+k*group]))
		if slots[k] != slots[0] {
			same = false
		}
	}
	l.slotBuf = slots
	if same {
		n, ok := c.target(slots[0], fc.info)
		if !ok {
			return false
		}
		if n == nil {
			return c.slow(args, raw)
		}
		l.observeHot(args[1])
		r := l.getReq(c)
		r.info, r.label, r.slot, r.resp3 = fc.info, fc.label, slots[0], c.resp3
		l.keepRaw(r, raw)
		c.fifo.push(r)
		c.send(r, n)
		return true
	}
	m := l.s.cl.smap.Load()
	if m == nil {
		return c.slow(args, raw)
	}
	for _, slot := range slots {
		if !c.ordered(m, slot) {
			return false
		}
	}
	parent := l.getReq(c)
	parent.info, parent.label, parent.kind, parent.nkeys, parent.slot = fc.info, fc.label, fc.kind, nkeys, -1
	parent.resp3 = c.resp3
	if fc.kind == fkMGET {
		for k := 0; k < nkeys; k++ {
			parent.vals = append(parent.vals, [2]int{})
		}
	}
	c.fifo.push(parent)
	// Parts in order of first appearance; a key joins the part of its slot.
	parts := l.partsBuf[:0]
	for k := 0; k < nkeys; k++ {
		var p *lreq
		for _, q := range parts {
			if q.slot == slots[k] {
				p = q
				break
			}
		}
		if p == nil {
			p = l.getReq(c)
			p.parent, p.info, p.slot = parent, fc.info, slots[k]
			parts = append(parts, p)
		}
		p.keyPos = append(p.keyPos, int32(k))
	}
	parent.pending = len(parts)
	for _, p := range parts {
		p.raw = resp.AppendArrayHeader(p.raw[:0], 1+len(p.keyPos)*group)
		p.raw = resp.AppendBulk(p.raw, args[0])
		for _, k := range p.keyPos {
			for j := 0; j < group; j++ {
				p.raw = resp.AppendBulk(p.raw, args[1+int(k)*group+j])
			}
		}
	}
	for i, p := range parts {
		n := c.pick(m, p.slot, fc.info) // the map the order was checked against
		if n == nil {
			n = m.master(p.slot)
		}
		c.send(p, n)
		parts[i] = nil
	}
	l.partsBuf = parts[:0]
	return true
}

var errUnexpectedReply = []byte("-ERR proxy: unexpected reply from a cluster node\r\n")

// partDone folds the reply of one part into its command; the last part completes it.
func (c *lclient) partDone(p *lreq, rep []byte) {
	parent := p.parent
	l := c.l
	parent.redirected = parent.redirected || p.redirected
	switch {
	case len(rep) > 0 && rep[0] == '-':
		if parent.errRep == nil {
			parent.errRep = append([]byte(nil), rep...)
		}
	case parent.kind == fkSum:
		v, ok := parseIntReply(rep)
		if !ok && parent.errRep == nil {
			parent.errRep = errUnexpectedReply
		}
		parent.sum += v
	case parent.kind == fkMGET:
		if !c.storeValues(parent, p, rep) && parent.errRep == nil {
			parent.errRep = errUnexpectedReply
		}
	}
	l.release(p)
	parent.pending--
	if parent.pending > 0 {
		return
	}
	switch {
	case parent.errRep != nil:
		c.complete(parent, parent.errRep)
	case parent.kind == fkAllOK:
		c.complete(parent, replyOK)
	case parent.kind == fkSum:
		l.scratch = resp.AppendInt(l.scratch[:0], parent.sum)
		c.complete(parent, l.scratch)
	default:
		out := resp.AppendArrayHeader(l.scratch[:0], parent.nkeys)
		for _, v := range parent.vals {
			out = append(out, parent.reply[v[0]:v[0]+v[1]]...)
		}
		parent.reply = parent.reply[:0]
		l.scratch = out
		c.complete(parent, out)
	}
}

// storeValues copies the values of an MGET part into the command's reply buffer.
func (c *lclient) storeValues(parent, p *lreq, rep []byte) bool {
	if len(rep) < 4 || rep[0] != '*' {
		return false
	}
	i := bytes.IndexByte(rep, '\n')
	n, ok := resp.ParseLen(rep[1 : i-1])
	if !ok || int(n) != len(p.keyPos) {
		return false
	}
	pos := i + 1
	for _, k := range p.keyPos {
		end, _, err := resp.FrameValue(rep, pos)
		if err != nil || end == 0 {
			return false
		}
		parent.vals[k] = [2]int{len(parent.reply), end - pos}
		parent.reply = append(parent.reply, rep[pos:end]...)
		pos = end
	}
	return true
}

func parseIntReply(rep []byte) (int64, bool) {
	if len(rep) < 4 || rep[0] != ':' {
		return 0, false
	}
	return resp.ParseLen(rep[1 : len(rep)-2])
}

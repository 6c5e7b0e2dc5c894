package proxy

import (
	"bytes"
	"strconv"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// multiKeyCmds are the commands whose keys may span slots, as data: how many arguments go
// with each key, and how the replies of the parts (one per slot) merge. The one table of
// them: the event loops split and merge them in place (fast.go: sendMulti, partDone), the
// slow path (a read-only user's MGET, a client with CLIENT REPLY OFF …) with splitKeys.
var multiKeyCmds = map[string]struct {
	group int
	merge fastKind
}{
	"mget": {1, fkMGET}, "mset": {2, fkAllOK},
	"del": {1, fkSum}, "unlink": {1, fkSum}, "exists": {1, fkSum}, "touch": {1, fkSum},
}

// mergeFuncs are the slow path's merges of multiKeyCmds' kinds.
var mergeFuncs = map[fastKind]func(parts []*request, replies [][]byte, keys int) []byte{
	fkMGET: mergeMGET, fkAllOK: mergeAllOK, fkSum: mergeSum,
}

// splitKeys handles commands of the form CMD key [arg…] key [arg…] … (group arguments per
// key) whose keys may span slots: one sub-request per slot, sent in parallel, merged in
// request order. Keys in one slot stay one command, so a single-slot call is unchanged.
func splitKeys(group int, merge func(parts []*request, replies [][]byte, keys int) []byte) handler {
	return func(ss *session, r *request) bool {
		args := r.args
		if len(args) < 1+group || (len(args)-1)%group != 0 {
			return false // wrong arity: let a node answer
		}
		nkeys := (len(args) - 1) / group
		first := command.KeySlot(args[1])
		same := true
		for i := 1 + group; i < len(args); i += group {
			if command.KeySlot(args[i]) != first {
				same = false
				break
			}
		}
		if same {
			return false
		}
		bySlot := map[int]*request{}
		var parts []*request
		for k := 0; k < nkeys; k++ {
			pos := 1 + k*group
			slot := command.KeySlot(args[pos])
			p, ok := bySlot[slot]
			if !ok {
				p = &request{info: r.info, slot: slot, args: [][]byte{args[0]}, done: make(chan struct{}, 1), start: r.start}
				bySlot[slot] = p
				parts = append(parts, p)
			}
			p.args = append(p.args, args[pos:pos+group]...)
			p.keyPos = append(p.keyPos, k)
		}
		for _, p := range parts {
			p.raw = resp.AppendCommand(nil, p.args...)
			ss.send(p)
		}
		r.parts = parts
		r.merge = func(replies [][]byte) []byte { return merge(parts, replies, nkeys) }
		return true
	}
}

func firstError(replies [][]byte) []byte {
	for _, rep := range replies {
		if len(rep) > 0 && rep[0] == '-' {
			return rep
		}
	}
	return nil
}

func mergeSum(_ []*request, replies [][]byte, _ int) []byte {
	if e := firstError(replies); e != nil {
		return e
	}
	var sum int64
	for _, rep := range replies {
		n, err := strconv.ParseInt(string(bytes.TrimSpace(rep[1:])), 10, 64)
		if rep[0] != ':' || err != nil {
			return resp.ErrorReply("ERR proxy: unexpected reply from a cluster node")
		}
		sum += n
	}
	return resp.AppendInt(nil, sum)
}

func mergeAllOK(_ []*request, replies [][]byte, _ int) []byte {
	if e := firstError(replies); e != nil {
		return e
	}
	return replyOK
}

func mergeMGET(parts []*request, replies [][]byte, nkeys int) []byte {
	if e := firstError(replies); e != nil {
		return e
	}
	vals := make([][]byte, nkeys)
	for i, rep := range replies {
		elems, ok := resp.SplitArray(rep)
		if !ok || len(elems) != len(parts[i].keyPos) {
			return resp.ErrorReply("ERR proxy: unexpected reply from a cluster node")
		}
		for j, e := range elems {
			vals[parts[i].keyPos[j]] = e
		}
	}
	out := resp.AppendArrayHeader(nil, nkeys)
	for _, v := range vals {
		out = append(out, v...)
	}
	return out
}

// splitArray returns the raw elements of a flat RESP array reply (elements that are
// themselves simple values or bulk strings).
func splitArray(rep []byte) ([][]byte, bool) {
	if len(rep) < 4 || rep[0] != '*' {
		return nil, false
	}
	i := bytes.IndexByte(rep, '\n')
	n, err := strconv.Atoi(string(rep[1 : i-1]))
	if err != nil || n < 0 {
		return nil, n == -1
	}
	rest := rep[i+1:]
	out := make([][]byte, 0, n)
	for k := 0; k < n; k++ {
		size, ok := valueSize(rest)
		if !ok {
			return nil, false
		}
		out = append(out, rest[:size])
		rest = rest[size:]
	}
	return out, len(rest) == 0
}

// valueSize returns the length of the complete RESP value at the start of b.
func valueSize(b []byte) (int, bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 {
		return 0, false
	}
	switch b[0] {
	case '+', '-', ':', '_', ',', '#', '(':
		return i + 1, true
	case '$', '=', '!':
		n, err := strconv.Atoi(string(b[1 : i-1]))
		if err != nil {
			return 0, false
		}
		if n < 0 {
			return i + 1, true
		}
		if i+1+n+2 > len(b) {
			return 0, false
		}
		return i + 1 + n + 2, true
	case '*', '~', '>', '%', '|':
		n, err := strconv.Atoi(string(b[1 : i-1]))
		if err != nil {
			return 0, false
		}
		if b[0] == '%' || b[0] == '|' {
			n *= 2
		}
		size := i + 1
		for k := 0; k < n; k++ {
			s, ok := valueSize(b[size:])
			if !ok {
				return 0, false
			}
			size += s
		}
		return size, true
	}
	return 0, false
}

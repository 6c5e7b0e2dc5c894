package proxy

import (
	"bytes"
	"strconv"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// RESP3 for clients that sent HELLO 3. The cluster connections stay RESP2. On an event
// loop, commands whose replies differ only by their nulls stay on the fast path
// (resp3Nulls); the others, and every command of the slow path, get their reply
// through toRESP3 in session.finish, which re-encodes the RESP2 reply the way Redis
// answers the same command in RESP3: nulls ($-1, *-1) become _, and by command, maps
// (HGETALL, CONFIG GET, XREAD, XINFO …), sets (SMEMBERS, SINTER …), doubles (ZSCORE,
// WITHSCORES pairs …), verbatim strings (INFO, CLIENT LIST …). Pub/Sub messages and
// confirmations become > push frames (pushMsg). Commands whose reply shape is not listed
// in resp3Shapes only get the null conversion, which is what Redis 7.0 does for every
// command that does not use maps, sets or doubles.

// rv is one parsed reply: t is its RESP3 type byte ('v' is a verbatim string made from a
// bulk string), s the payload of a non-aggregate, elems the elements of an aggregate (a
// map's keys and values alternate).
type rv struct {
	t     byte
	s     []byte
	elems []rv
}

// parseReply parses one RESP2 or RESP3 reply from the front of b.
func parseReply(b []byte, depth int) (rv, []byte, bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 2 || b[i-1] != '\r' || depth > resp.MaxReplyDepth {
		return rv{}, nil, false
	}
	line, rest := b[1:i-1], b[i+1:]
	switch b[0] {
	case '+', '-', ':', ',', '#', '(':
		return rv{t: b[0], s: line}, rest, true
	case '_':
		return rv{t: '_'}, rest, true
	case '$', '=', '!':
		n, err := strconv.Atoi(string(line))
		if err != nil {
			return rv{}, nil, false
		}
		if n < 0 {
			return rv{t: '_'}, rest, true
		}
		if len(rest) < n+2 {
			return rv{}, nil, false
		}
		return rv{t: b[0], s: rest[:n]}, rest[n+2:], true
	case '*', '~', '%', '>':
		n, err := strconv.Atoi(string(line))
		if err != nil {
			return rv{}, nil, false
		}
		if n < 0 {
			return rv{t: '_'}, rest, true
		}
		if b[0] == '%' {
			n *= 2
		}
		if n > len(rest)/3 {
			return rv{}, nil, false
		}
		v := rv{t: b[0], elems: make([]rv, n)}
		for j := range v.elems {
			var ok bool
			if v.elems[j], rest, ok = parseReply(rest, depth+1); !ok {
				return rv{}, nil, false
			}
		}
		return v, rest, true
	}
	return rv{}, nil, false
}

// appendRESP3 encodes v.
func (v *rv) appendRESP3(dst []byte) []byte {
	switch v.t {
	case '_':
		return append(dst, '_', '\r', '\n')
	case '$', '=', '!':
		dst = append(dst, v.t)
		dst = strconv.AppendInt(dst, int64(len(v.s)), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, v.s...)
		return append(dst, '\r', '\n')
	case 'v':
		dst = append(dst, '=')
		dst = strconv.AppendInt(dst, int64(len(v.s)+4), 10)
		dst = append(dst, "\r\ntxt:"...)
		dst = append(dst, v.s...)
		return append(dst, '\r', '\n')
	case '*', '~', '%', '>':
		n := len(v.elems)
		if v.t == '%' {
			n /= 2
		}
		dst = append(dst, v.t)
		dst = strconv.AppendInt(dst, int64(n), 10)
		dst = append(dst, '\r', '\n')
		for i := range v.elems {
			dst = v.elems[i].appendRESP3(dst)
		}
		return dst
	}
	dst = append(dst, v.t)
	dst = append(dst, v.s...)
	return append(dst, '\r', '\n')
}

// shape turns a reply (already parsed) into the RESP3 form of one command's reply.
type shape func(v *rv)

func toMap(v *rv) {
	if v.t == '*' && len(v.elems)%2 == 0 {
		v.t = '%'
	}
}

func toSet(v *rv) {
	if v.t == '*' {
		v.t = '~'
	}
}

func toDouble(v *rv) {
	if v.t == '$' {
		v.t = ','
	}
}

func toVerbatim(v *rv) {
	if v.t == '$' {
		v.t = 'v'
	}
}

func toPush(v *rv) {
	if v.t == '*' {
		v.t = '>'
	}
}

// each applies f to every element of an array.
func each(f shape) shape {
	return func(v *rv) {
		if v.t == '*' || v.t == '~' {
			for i := range v.elems {
				f(&v.elems[i])
			}
		}
	}
}

// at applies f to element i of an array.
func at(i int, f shape) shape {
	return func(v *rv) {
		if v.t == '*' && i < len(v.elems) {
			f(&v.elems[i])
		}
	}
}

// last applies f to the last element of an array.
func last(f shape) shape {
	return func(v *rv) {
		if v.t == '*' && len(v.elems) > 0 {
			f(&v.elems[len(v.elems)-1])
		}
	}
}

// mapWith makes a map and applies the shape that fields returns for a key (nil: none) to
// its value.
func mapWith(fields func(key string) shape) shape {
	return func(v *rv) {
		toMap(v)
		if v.t != '%' {
			return
		}
		for i := 0; i+1 < len(v.elems); i += 2 {
			if f := fields(string(v.elems[i].s)); f != nil {
				f(&v.elems[i+1])
			}
		}
	}
}

func fields(m map[string]shape) func(string) shape {
	return func(k string) shape { return m[k] }
}

// pairs turns a flat [a, b, a, b …] array into [[a, b], [a, b] …] (RESP3's WITHSCORES and
// WITHVALUES form); with score the second of each pair is a double.
func pairs(score bool) shape {
	return func(v *rv) {
		if v.t != '*' || len(v.elems)%2 != 0 {
			return
		}
		out := make([]rv, len(v.elems)/2)
		for i := range out {
			p := rv{t: '*', elems: []rv{v.elems[2*i], v.elems[2*i+1]}}
			if score {
				toDouble(&p.elems[1])
			}
			out[i] = p
		}
		v.elems = out
	}
}

// streamsMap turns XREAD's [[key, entries] …] into a map key → entries.
func streamsMap(v *rv) {
	if v.t != '*' {
		return
	}
	out := make([]rv, 0, 2*len(v.elems))
	for _, e := range v.elems {
		if e.t != '*' || len(e.elems) != 2 {
			return
		}
		out = append(out, e.elems...)
	}
	v.t, v.elems = '%', out
}

func hasArg(args [][]byte, from int, word string) bool {
	for i := from; i < len(args); i++ {
		if len(args[i]) == len(word) && bytes.EqualFold(args[i], []byte(word)) {
			return true
		}
	}
	return false
}

var (
	xinfoStreamShape = mapWith(fields(map[string]shape{
		"groups": each(mapWith(fields(map[string]shape{"consumers": each(toMap)}))),
	}))
	functionListShape = each(mapWith(fields(map[string]shape{
		"functions": each(mapWith(fields(map[string]shape{"flags": toSet}))),
	})))
	// MEMORY STATS: db.<n> are maps; its bulk strings (ratios, percentages) are doubles.
	memoryStatsShape = mapWith(func(k string) shape {
		if len(k) > 3 && k[:3] == "db." {
			return toMap
		}
		return toDouble
	})
	functionStatsShape = mapWith(fields(map[string]shape{
		"running_script": toMap,
		"engines":        mapWith(func(string) shape { return toMap }),
	}))
	zpairs = pairs(true)
)

// resp3Shape returns how the reply of the command args changes in RESP3 beyond nulls (nil:
// it does not). queued are the commands of a transaction, for EXEC.
func resp3Shape(args [][]byte, queued [][][]byte) shape {
	if len(args) == 0 {
		return nil
	}
	var sub string
	if len(args) > 1 {
		sub = lowerName(args[1])
	}
	switch name := lowerName(args[0]); name {
	case "hgetall":
		return toMap
	case "hello":
		return mapWith(fields(map[string]shape{"modules": each(toMap)}))
	case "config":
		if sub == "get" {
			return toMap
		}
	case "smembers", "sinter", "sunion", "sdiff":
		return toSet
	case "zscore", "zincrby", "zadd":
		return toDouble
	case "zmscore":
		return each(toDouble)
	case "zrange", "zrangebyscore", "zrevrange", "zrevrangebyscore", "zunion", "zinter", "zdiff", "zrandmember":
		if hasArg(args, 2, "withscores") {
			return zpairs
		}
	case "hrandfield":
		if hasArg(args, 3, "withvalues") {
			return pairs(false)
		}
	case "zpopmin", "zpopmax":
		if len(args) > 2 {
			return zpairs
		}
		return at(1, toDouble)
	case "bzpopmin", "bzpopmax":
		return at(2, toDouble)
	case "zmpop", "bzmpop":
		return at(1, each(at(1, toDouble)))
	case "geopos":
		return each(each(toDouble))
	case "georadius", "georadius_ro", "georadiusbymember", "georadiusbymember_ro", "geosearch":
		if hasArg(args, 2, "withcoord") {
			return each(last(each(toDouble)))
		}
	case "xread", "xreadgroup":
		return streamsMap
	case "xinfo":
		switch sub {
		case "stream":
			return xinfoStreamShape
		case "groups", "consumers":
			return each(toMap)
		}
	case "lcs":
		if hasArg(args, 3, "idx") {
			return toMap
		}
	case "memory":
		switch sub {
		case "stats":
			return memoryStatsShape
		case "doctor":
			return toVerbatim
		}
	case "latency":
		if sub == "doctor" {
			return toVerbatim
		}
	case "function":
		switch sub {
		case "list":
			return functionListShape
		case "stats":
			return functionStatsShape
		}
	case "info", "lolwut":
		return toVerbatim
	case "client":
		if sub == "list" || sub == "info" {
			return toVerbatim
		}
		if sub == "trackinginfo" {
			return mapWith(fields(map[string]shape{"flags": toSet}))
		}
	case "cluster":
		switch sub {
		case "info", "nodes":
			return toVerbatim
		case "shards":
			return each(mapWith(fields(map[string]shape{"nodes": each(toMap)})))
		case "links":
			return each(toMap)
		}
	case "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe":
		return toPush
	case "exec":
		return func(v *rv) {
			if v.t != '*' || len(v.elems) != len(queued) {
				return
			}
			for i := range v.elems {
				if f := resp3Shape(queued[i], nil); f != nil {
					f(&v.elems[i])
				}
			}
		}
	}
	return nil
}

// toRESP3 re-encodes the RESP2 reply of the command args (every frame of it: a subscribe
// command's reply is one confirmation per channel) in RESP3. A reply that does not parse is
// returned unchanged.
func toRESP3(args [][]byte, queued [][][]byte, reply []byte) []byte {
	if len(reply) == 0 || reply[0] == '-' || reply[0] == '+' || reply[0] == ':' {
		return reply
	}
	f := resp3Shape(args, queued)
	out := make([]byte, 0, len(reply)+16)
	for rest := reply; len(rest) > 0; {
		v, r, ok := parseReply(rest, 0)
		if !ok {
			return reply
		}
		if f != nil {
			f(&v)
		}
		out = v.appendRESP3(out)
		rest = r
	}
	return out
}

// pushFrames turns Pub/Sub messages (one or more RESP2 frames) into RESP3 push frames.
func pushFrames(msg []byte) []byte {
	return toRESP3([][]byte{[]byte("subscribe")}, nil, msg)
}

// resp3Nulls re-encodes the nulls of a RESP2 reply ($-1, *-1, also nested) as RESP3's _:
// the only difference for the commands the event loops serve to RESP3 clients. A reply
// without "-1" is returned as is, without parsing.
func resp3Nulls(reply []byte) []byte {
	if !bytes.Contains(reply, []byte("-1\r\n")) || len(reply) == 0 || reply[0] == '-' || reply[0] == '+' || reply[0] == ':' {
		return reply
	}
	out := make([]byte, 0, len(reply))
	for rest := reply; len(rest) > 0; {
		v, r, ok := parseReply(rest, 0)
		if !ok {
			return reply
		}
		out = v.appendRESP3(out)
		rest = r
	}
	return out
}

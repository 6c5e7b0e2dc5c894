package proxy

import (
	"bytes"
	"regexp"
	"sort"
	"strconv"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// LATENCY LATEST / HISTORY / DOCTOR / GRAPH over every node (masters and replicas, as
// LATENCY RESET), merged into the answer of one Redis: LATEST one entry per event (the
// newest sample's time and latency, the highest maximum), HISTORY the samples of every
// node in time order (one per second, the highest; the last 160, as Redis keeps),
// DOCTOR every node's report that is not Redis's "no latency spike" (under the node's
// address), GRAPH the graph of the node with the highest all-time latency for the event.

// latencyHistoryLen is how many samples Redis keeps per event (LATENCY_TS_LEN).
const latencyHistoryLen = 160

var latencyHandler = subcommands(map[string]handler{
	"reset":   adminOnly(fanoutEveryNode(mergeNodesSum)),
	"latest":  fanoutEveryNode(mergeLatencyLatest),
	"history": fanoutEveryNode(mergeLatencyHistory),
	"doctor":  fanoutEveryNode(mergeLatencyDoctor),
	"graph":   fanoutEveryNode(mergeLatencyGraph),
})

// latencyInts parses an array of n-field entries whose first field is kept raw (the
// event name) when named, the others as integers.
func latencyEntries(rep []byte, named bool) ([][]int64, [][]byte, bool) {
	elems, ok := resp.SplitArray(rep)
	if !ok {
		return nil, nil, false
	}
	var nums [][]int64
	var names [][]byte
	for _, e := range elems {
		fields, ok := resp.SplitArray(e)
		if !ok || len(fields) == 0 {
			return nil, nil, false
		}
		var row []int64
		for i, f := range fields {
			if i == 0 && named {
				names = append(names, f)
				continue
			}
			if len(f) < 3 || f[0] != ':' {
				return nil, nil, false
			}
			v, err := strconv.ParseInt(string(f[1:len(f)-2]), 10, 64)
			if err != nil {
				return nil, nil, false
			}
			row = append(row, v)
		}
		nums = append(nums, row)
	}
	return nums, names, true
}

func mergeLatencyLatest(parts []*request, replies [][]byte) []byte {
	if e := nodeError(parts, replies); e != nil {
		return e
	}
	type latest struct {
		name           []byte
		at, last, high int64
	}
	by := map[string]*latest{}
	for _, rep := range replies {
		nums, names, ok := latencyEntries(rep, true)
		if !ok {
			return rep
		}
		for i, row := range nums {
			if len(row) != 3 {
				return rep
			}
			l := by[string(names[i])]
			if l == nil {
				l = &latest{name: names[i]}
				by[string(names[i])] = l
			}
			if row[0] > l.at || row[0] == l.at && row[1] > l.last {
				l.at, l.last = row[0], row[1]
			}
			l.high = max(l.high, row[2])
		}
	}
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b := resp.AppendArrayHeader(nil, len(keys))
	for _, k := range keys {
		l := by[k]
		b = resp.AppendArrayHeader(b, 4)
		b = append(b, l.name...)
		b = resp.AppendInt(b, l.at)
		b = resp.AppendInt(b, l.last)
		b = resp.AppendInt(b, l.high)
	}
	return b
}

func mergeLatencyHistory(parts []*request, replies [][]byte) []byte {
	if e := nodeError(parts, replies); e != nil {
		return e
	}
	by := map[int64]int64{}
	for _, rep := range replies {
		nums, _, ok := latencyEntries(rep, false)
		if !ok {
			return rep
		}
		for _, row := range nums {
			if len(row) != 2 {
				return rep
			}
			by[row[0]] = max(by[row[0]], row[1])
		}
	}
	ts := make([]int64, 0, len(by))
	for t := range by {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	if len(ts) > latencyHistoryLen {
		ts = ts[len(ts)-latencyHistoryLen:]
	}
	b := resp.AppendArrayHeader(nil, len(ts))
	for _, t := range ts {
		b = resp.AppendArrayHeader(b, 2)
		b = resp.AppendInt(b, t)
		b = resp.AppendInt(b, by[t])
	}
	return b
}

// latencyNoSpike starts Redis's DOCTOR report for a node without latency events.
var latencyNoSpike = []byte("Dave, no latency spike was observed")

func mergeLatencyDoctor(parts []*request, replies [][]byte) []byte {
	if e := nodeError(parts, replies); e != nil {
		return e
	}
	var out []byte
	for i, rep := range replies {
		body, ok := bulkBody(rep)
		if !ok {
			return rep
		}
		if bytes.Contains(body, latencyNoSpike) {
			continue
		}
		out = append(out, "Node "+parts[i].pinned.addr+":\n"...)
		out = append(out, body...)
		out = append(out, '\n')
	}
	if out == nil {
		return replies[0] // every node: no spike
	}
	return resp.AppendBulk(nil, out)
}

// latencyAllTimeHigh finds "(all time high N ms)" in a LATENCY GRAPH.
var latencyAllTimeHigh = regexp.MustCompile(`all time high (\d+) ms`)

func mergeLatencyGraph(parts []*request, replies [][]byte) []byte {
	best, bestHigh := -1, int64(-1)
	for i, rep := range replies {
		body, ok := bulkBody(rep)
		if !ok {
			continue // "-ERR No samples available …" from this node
		}
		high := int64(0)
		if m := latencyAllTimeHigh.FindSubmatch(body); m != nil {
			high, _ = strconv.ParseInt(string(m[1]), 10, 64)
		}
		if high > bestHigh {
			best, bestHigh = i, high
		}
	}
	if best < 0 {
		return nodesCommonError(parts, replies)
	}
	return replies[best]
}

// bulkBody returns the payload of a bulk string reply.
func bulkBody(rep []byte) ([]byte, bool) {
	if len(rep) < 4 || rep[0] != '$' {
		return nil, false
	}
	i := bytes.IndexByte(rep, '\n')
	if i < 0 || len(rep) < i+3 {
		return nil, false
	}
	return rep[i+1 : len(rep)-2], true
}

// nodesCommonError is the nodes' error when they all gave the same, else the first
// node's error naming it.
func nodesCommonError(parts []*request, replies [][]byte) []byte {
	for _, rep := range replies[1:] {
		if !bytes.Equal(rep, replies[0]) {
			if e := nodeError(parts, replies); e != nil {
				return e
			}
			return replies[0]
		}
	}
	return replies[0]
}

package proxy

import (
	"strconv"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// proxyCommand answers PROXY HOTKEYS [count] and PROXY INFO: admin commands of the proxy
// itself.
func proxyCommand(ss *session, r *request) []byte {
	if len(r.args) < 2 {
		return wrongArgs("proxy")
	}
	switch lowerName(r.args[1]) {
	case "hotkeys":
		n := 10
		if len(r.args) > 2 {
			v, err := strconv.Atoi(string(r.args[2]))
			if err != nil || v < 1 {
				return resp.ErrorReply("ERR count must be a positive integer")
			}
			n = v
		}
		top := ss.s.hot.top(n)
		b := resp.AppendArrayHeader(nil, 2*len(top))
		for _, hk := range top {
			b = resp.AppendBulkString(b, hk.Key)
			b = resp.AppendBulkString(b, strconv.FormatFloat(hk.PerSecond, 'f', 1, 64))
		}
		return b
	case "info":
		return resp.AppendBulkString(nil, ss.s.proxyInfo())
	case "slowlog":
		// PROXY SLOWLOG [count]: SLOWLOG GET with a seventh field, the node (slowlog.go).
		return slowlogAnswer(ss, append([][]byte{[]byte("slowlog"), []byte("get")}, r.args[2:]...), true)
	}
	return resp.ErrorReply("ERR unknown subcommand '" + string(r.args[1]) + "'. Try PROXY HOTKEYS, PROXY INFO or PROXY SLOWLOG.")
}

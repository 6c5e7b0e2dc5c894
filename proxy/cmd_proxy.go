package proxy

import "strconv"

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
				return errorReply("ERR count must be a positive integer")
			}
			n = v
		}
		top := ss.s.hot.top(n)
		b := appendArrayHeader(nil, 2*len(top))
		for _, hk := range top {
			b = appendBulkString(b, hk.Key)
			b = appendBulkString(b, strconv.FormatFloat(hk.PerSecond, 'f', 1, 64))
		}
		return b
	case "info":
		return appendBulkString(nil, ss.s.proxyInfo())
	}
	return errorReply("ERR unknown subcommand '" + string(r.args[1]) + "'. Try PROXY HOTKEYS or PROXY INFO.")
}

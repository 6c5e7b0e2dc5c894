package proxy

import (
	"fmt"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// A read-only user may run what the command table marks read-only (with the flags of the
// subcommand for container commands such as XGROUP, XINFO or OBJECT), plus the proxy-local
// and connection commands listed here; everything else is refused. Deny by default: a
// command the table does not know, a container command whose subcommands the table does
// not describe, and a command without the readonly flag are refused (PUBLISH, CONFIG SET,
// CLIENT PAUSE, XGROUP CREATE, BITFIELD, ZRANGESTORE …). Commands whose flags say
// read-only but which may write at run time (EVAL, EVALSHA, FCALL) are refused; their _RO
// variants are allowed.

// readonlySafe are commands a read-only user may run whatever the table says: connection
// state, transactions (each queued command is checked), subscriptions, and what the
// proxy answers itself without revealing other clients.
var readonlySafe = map[string]bool{
	"auth": true, "hello": true, "ping": true, "echo": true, "quit": true, "reset": true, "select": true,
	"readonly": true, "readwrite": true, "asking": true, "time": true, "info": true, "command": true,
	"cluster": true, "wait": true, "waitaof": true,
	"multi": true, "exec": true, "discard": true, "watch": true, "unwatch": true,
	"subscribe": true, "psubscribe": true, "ssubscribe": true, "unsubscribe": true, "punsubscribe": true, "sunsubscribe": true,
}

// readonlySafeSub are subcommands a read-only user may run whatever the table says (the
// built-in table describes no subcommands).
var readonlySafeSub = map[string]bool{
	"client|id": true, "client|getname": true, "client|setname": true, "client|info": true, "client|setinfo": true,
	"client|reply": true, "client|no-evict": true, "client|no-touch": true, "client|help": true,
	"pubsub|channels": true, "pubsub|numsub": true, "pubsub|numpat": true, "pubsub|shardchannels": true, "pubsub|shardnumsub": true,
	"script|exists": true, "function|list": true, "function|stats": true, "function|dump": true,
	"xinfo|stream": true, "xinfo|groups": true, "xinfo|consumers": true, "xinfo|help": true,
	"object|encoding": true, "object|freq": true, "object|idletime": true, "object|refcount": true, "object|help": true,
	"memory|usage": true, "proxy|info": true,
}

// containers are the commands whose permission is decided per subcommand.
var containers = map[string]bool{
	"client": true, "config": true, "pubsub": true, "script": true, "function": true, "xinfo": true, "xgroup": true,
	"object": true, "memory": true, "slowlog": true, "latency": true, "acl": true, "module": true, "debug": true,
	"proxy": true,
}

// readonlyRefusal returns the NOPERM reply for a command a read-only user may not run, or
// nil.
func (s *Server) readonlyRefusal(args [][]byte) []byte {
	name := lowerName(args[0])
	if readonlySafe[name] {
		return nil
	}
	t := s.cl.cmds.Load()
	info := t.Lookup(args[0])
	if containers[name] || info != nil && info.Container {
		if len(args) < 2 {
			return nil // the arity error comes from the handler or a node
		}
		full := name + "|" + lowerName(args[1])
		if readonlySafeSub[full] {
			return nil
		}
		if fl, ok := t.Sub[full]; ok && fl&command.Readonly != 0 && fl&command.Write == 0 {
			return nil
		}
		return noPerm(full)
	}
	if readonlyDenied[name] {
		return noPerm(name)
	}
	if info != nil && info.Flags&command.Readonly != 0 && info.Flags&command.Write == 0 {
		return nil
	}
	return noPerm(name)
}

func noPerm(name string) []byte {
	return resp.ErrorReply(fmt.Sprintf("NOPERM User has no permissions to run the '%s' command", name))
}

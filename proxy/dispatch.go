package proxy

import (
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// Where a command goes. Every command a client sends passes these stages, in this order;
// the first that claims it handles it (session.newRequest):
//
//  1. authGate (auth.go): NOAUTH before AUTH, writes of read-only users refused
//  2. deny-commands (reload.go)
//  3. an open MULTI queues it (cmd_tx.go)
//  4. the subscribe family, and what RESP2 subscribed mode allows (pubsub.go, resp3.go)
//  5. the commands table below: answered by the proxy (cmd_local.go, cmd_cluster.go, slowlog.go,
//     hotkeys.go), split by slot (multikey.go), sent to every master (handlers.go), or
//     transactions (cmd_tx.go); a handler may decline (return false) and leave the command to
//  6. routing by its keys' slot to the owner (session.dispatch), blocking commands on a
//     private connection (private.go); commands without keys go to any master.
//
// Clients on an event loop take a shortcut for the commands of the fast table (fast.go,
// derived from the command table and this one) while their session is in its plain state
// (lclient.refreshSimple); everything else goes through these stages.

// handler takes over a command that is more than one request routed by its slot. It
// returns false to leave the command to routing.
type handler func(ss *session, r *request) bool

// commands maps lower-case command names to their handler: the one table of commands the
// proxy does not simply route.
var commands map[string]handler

// The table is filled by init: its handlers reach the event loops, which look commands up
// in it (a package-level initializer would be an initialization cycle).
func init() {
	commands = map[string]handler{
		// Answered by the proxy (cmd_local.go).
		"ping":   localHandler(localPing),
		"echo":   localHandler(localEcho),
		"quit":   localHandler(localQuit),
		"select": localHandler(localSelect),
		"hello":  localHandler(func(ss *session, r *request) []byte { return ss.hello(r) }),
		// Cluster clients send these; the proxy routes reads by its read-from setting and never
		// sends ASK to clients, so they change nothing.
		"readonly": localHandler(localOK), "readwrite": localHandler(localOK), "asking": localHandler(localOK),
		// CONFIG, CLIENT, LATENCY, SLOWLOG: the proxy's own settings and clients, and the
		// nodes' behind enable-admin-commands (cmd_admin.go, cmd_client.go, slowlog.go).
		"config":  configCommand,
		"client":  clientHandler,
		"slowlog": slowlogHandler,
		"latency": latencyHandler, // latency.go
		// Refused: they would act on one node of the cluster, or on none.
		"shutdown": shutdownRefused, "slaveof": unsupported, "replicaof": unsupported, "debug": unsupported,
		"monitor": localHandler(monitorCommand), "sync": unsupported, "psync": unsupported, "migrate": unsupported,
		"failover": unsupported, "bgsave": unsupported, "bgrewriteaof": unsupported, "save": unsupported,
		"swapdb": unsupported, "move": unsupported, "acl": unsupported, "module": unsupported,

		// Without keys: every master, or the proxy's own state (handlers.go, cmd_scan.go, cmd_cluster.go).
		"dbsize":    fanout(mergeNodeSum),
		"keys":      fanout(mergeNodeConcat),
		"randomkey": execHandler(execRandomKey),
		"flushall":  guarded(func(c *Config) bool { return c.EnableFlushall }, "enable-flushall", fanout(mergeNodeAllOK)),
		"flushdb":   guarded(func(c *Config) bool { return c.EnableFlushall }, "enable-flushall", fanout(mergeNodeAllOK)),
		"script":    subcommands(map[string]handler{"load": rememberScript(fanout(mergeNodeSame)), "exists": fanout(mergeNodeAnd), "flush": forgetScripts(fanout(mergeNodeAllOK)), "kill": execHandler(execKill)}),
		"function": subcommands(map[string]handler{"load": fanout(mergeNodeSame), "delete": fanout(mergeNodeAllOK),
			"flush": fanout(mergeNodeAllOK), "list": fanout(mergeNodeFirst), "restore": fanout(mergeNodeAllOK), "kill": execHandler(execKill)}),
		"scan":    execHandler(execScan),
		"info":    execHandler(execInfo),
		"cluster": localHandler(clusterCommand),
		"proxy":   localHandler(proxyCommand),
		"reset":   resetCommand,
		"wait":    execHandler(execWait),

		// Pub/Sub counts: by the channel's slot, where its subscriptions are (pubsub_route.go).
		"publish": publishBySlot,
		"pubsub":  subcommands(map[string]handler{"channels": fanout(mergeChannels), "numsub": pubsubNumsub, "numpat": fanout(mergeMax)}),

		// Transactions (cmd_tx.go).
		"multi":   txMulti,
		"exec":    txExec,
		"discard": txDiscard,
		"watch":   txWatch,
		"unwatch": txUnwatch,
	}
	// Keys in several slots: one request per slot, merged (multikey.go's table).
	for name, mk := range multiKeyCmds {
		commands[name] = splitKeys(mk.group, mergeFuncs[mk.merge])
	}
}

// knownNames interns the lower-case names of the built-in command table and of the
// commands table, so lowerName does not allocate for them. It is filled by init: the
// handlers in commands use lowerName.
var knownNames = map[string]string{}

func init() {
	for name := range command.Builtin().Cmds {
		knownNames[name] = name
	}
	for name := range commands {
		knownNames[name] = name
	}
}

// lowerName returns the lower-case command name; known names come back interned, so the
// hot path does not allocate.
func lowerName(name []byte) string {
	var buf [32]byte
	b := command.Lower(buf[:], name)
	if s, ok := knownNames[string(b)]; ok {
		return s
	}
	return string(b)
}

// newRequest builds the request for one command, through the stages above: answered
// locally, routed to a slot owner, split into parts, or deferred to the writer (exec)
// when it needs more than one round trip or session state.
func (ss *session) newRequest(args [][]byte, raw []byte) *request {
	if ss.track != nil {
		ss.trackBefore(args)
	}
	r := ss.stages(args, raw)
	r.resp3 = ss.resp3.Load() // after the stages: HELLO 3 is answered in RESP3 (resp3.go)
	return r
}

func (ss *session) stages(args [][]byte, raw []byte) *request {
	r := &request{args: args, raw: raw, slot: -1, start: time.Now()}
	callPanicHook("session", args)
	if reply := ss.authGate(r); reply != nil {
		if ss.tx.inMulti && reply[0] == '-' {
			ss.tx.aborted = true // as Redis: a command refused while queuing aborts EXEC
		}
		r.reply, r.local, r.done = reply, true, closedDone()
		return r
	}
	if reply := ss.s.denied(args[0]); reply != nil {
		if ss.tx.inMulti {
			ss.tx.aborted = true // a command refused while queuing aborts EXEC
		}
		r.reply, r.local, r.done = reply, true, closedDone()
		return r
	}
	if ss.queueInMulti(r) || ss.pubsubStage(r) {
		return r
	}
	r.done = make(chan struct{}, 1)
	r.info = ss.s.cl.cmds.Load().Lookup(args[0])
	if reply := ss.monitorGate(r); reply != nil {
		r.reply, r.local = reply, true
		r.done <- struct{}{}
		return r
	}
	if raw[0] != '*' {
		r.raw = resp.AppendCommand(nil, args...)
	}
	if h, ok := commands[lowerName(args[0])]; ok && h(ss, r) {
		return r
	}
	if r.info != nil {
		if (r.info.Name == "eval" || r.info.Name == "eval_ro") && len(args) > 1 {
			ss.s.scripts.remember(args[1])
		}
		var keyIdx [16]int
		idx, ok := r.info.KeyIndexes(args, keyIdx[:])
		if ok && len(idx) > 0 {
			var cross bool
			if r.slot, cross = command.KeysSlot(args, idx); cross {
				r.reply, r.local = errCrossSlot, true
				r.done <- struct{}{}
				return r
			}
		}
		if r.info.Flags&command.Blocking != 0 {
			r.barrier, r.direct = true, true
			return r
		}
	}
	ss.send(r)
	return r
}

package proxy

import (
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// adminOnly refuses h unless enable-admin-commands is set.
func adminOnly(h handler) handler {
	return func(ss *session, r *request) bool {
		if !ss.s.conf().EnableAdminCommands {
			return localHandler(func(ss *session, r *request) []byte {
				name := strings.ToUpper(string(r.args[0]))
				if len(r.args) > 1 {
					name += " " + strings.ToUpper(string(r.args[1]))
				}
				return resp.ErrorReply(fmt.Sprintf("ERR %s is disabled by the proxy (set enable-admin-commands yes)", name))
			})(ss, r)
		}
		return h(ss, r)
	}
}

// clientHandler: CLIENT PAUSE/UNPAUSE go to every node; the rest is the proxy's.
func clientHandler(ss *session, r *request) bool {
	if len(r.args) >= 2 {
		switch lowerName(r.args[1]) {
		case "pause", "unpause":
			return adminOnly(notePause(fanoutEveryNode(mergeNodesOK)))(ss, r)
		case "unblock":
			return execHandler(clientUnblock)(ss, r) // unblock.go
		}
	}
	return localHandler(clientCommand)(ss, r)
}

// slowlogHandler: SLOWLOG RESET empties the proxy's log and, with enable-admin-commands,
// every node's; the rest answers from the proxy's log.
func slowlogHandler(ss *session, r *request) bool {
	if len(r.args) == 2 && lowerName(r.args[1]) == "reset" && ss.s.conf().EnableAdminCommands {
		ss.s.slow.reset()
		return fanoutEveryNode(mergeNodesOK)(ss, r)
	}
	return localHandler(slowlogCommand)(ss, r)
}

// configCommand answers CONFIG: GET from the masters (with the proxy's own settings),
// SET/RESETSTAT/REWRITE on every node behind enable-admin-commands.
func configCommand(ss *session, r *request) bool {
	if len(r.args) < 2 {
		return false
	}
	switch lowerName(r.args[1]) {
	case "get":
		if len(r.args) < 3 {
			return false // a node answers the arity error
		}
		m := ss.s.cl.smap.Load()
		if m == nil {
			return false
		}
		s := ss.s
		fanoutTo(ss, r, m.masters, r.args, func(parts []*request, replies [][]byte) []byte { return s.mergeConfigGet(parts, replies) })
		return true
	case "set":
		return adminOnly(configSet)(ss, r)
	case "resetstat", "rewrite":
		return adminOnly(fanoutEveryNode(mergeNodesOK))(ss, r)
	}
	return false
}

// proxyParam is a Redis setting that the proxy owns: CONFIG SET applies it to the proxy
// (not to the nodes) and CONFIG GET reports the proxy's value.
type proxyParam struct {
	get func(c *Config) string
	// set validates v and stores it in c; the error is Redis's text after " - ".
	set func(c *Config, v string) error
}

func intRange(v string, lo, hi int64) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("argument couldn't be parsed into an integer")
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("argument must be between %d and %d inclusive", lo, hi)
	}
	return n, nil
}

func sizeRange(v string, lo, hi int64) (int64, error) {
	n, err := config.ParseSize(v)
	if err != nil {
		return 0, fmt.Errorf("argument must be a memory value")
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("argument must be between %d and %d inclusive", lo, hi)
	}
	return n, nil
}

func secondsParam(key string, f func(c *Config) *time.Duration) proxyParam {
	return proxyParam{
		get: func(c *Config) string { return strconv.FormatInt(int64(*f(c)/time.Second), 10) },
		set: func(c *Config, v string) error {
			n, err := intRange(v, 0, math.MaxInt32)
			if err != nil {
				return err
			}
			return fileBound(c, key, strconv.FormatInt(n, 10)+"s")
		},
	}
}

var proxyParams = map[string]proxyParam{
	"slowlog-log-slower-than": {
		get: func(c *Config) string {
			if c.SlowlogSlowerThan < 0 {
				return "-1"
			}
			return strconv.FormatInt(c.SlowlogSlowerThan.Microseconds(), 10)
		},
		set: func(c *Config, v string) error {
			n, err := intRange(v, -1, math.MaxInt64)
			switch {
			case n < 0:
				c.SlowlogSlowerThan = -1 // nothing is logged
			case n > math.MaxInt64/int64(time.Microsecond):
				c.SlowlogSlowerThan = math.MaxInt64
			default:
				c.SlowlogSlowerThan = time.Duration(n) * time.Microsecond
			}
			return err
		},
	},
	"slowlog-max-len": {
		get: func(c *Config) string { return strconv.Itoa(c.SlowlogMaxLen) },
		set: func(c *Config, v string) error {
			n, err := intRange(v, 0, math.MaxInt64)
			if err != nil {
				return err
			}
			return fileBound(c, "slowlog-max-len", strconv.FormatInt(n, 10))
		},
	},
	"maxclients": {
		get: func(c *Config) string { return strconv.Itoa(c.MaxClients) },
		set: func(c *Config, v string) error {
			n, err := intRange(v, 1, math.MaxUint32)
			if err != nil {
				return err
			}
			return fileBound(c, "maxclients", strconv.FormatInt(n, 10))
		},
	},
	"timeout":       secondsParam("client-idle-timeout", func(c *Config) *time.Duration { return &c.ClientIdleTimeout }),
	"tcp-keepalive": secondsParam("tcp-keepalive", func(c *Config) *time.Duration { return &c.TCPKeepalive }),
	"proto-max-bulk-len": {
		get: func(c *Config) string { return strconv.FormatInt(c.ProtoMaxBulkLen, 10) },
		set: func(c *Config, v string) error {
			n, err := sizeRange(v, 1<<20, math.MaxInt64)
			if err != nil {
				return err
			}
			return fileBound(c, "proto-max-bulk-len", strconv.FormatInt(n, 10))
		},
	},
	"client-query-buffer-limit": {
		get: func(c *Config) string { return strconv.FormatInt(c.QueryBufferLimit, 10) },
		set: func(c *Config, v string) error {
			n, err := sizeRange(v, 1<<20, math.MaxInt64)
			if err != nil {
				return err
			}
			return fileBound(c, "client-query-buffer-limit", strconv.FormatInt(n, 10))
		},
	},
	"requirepass": {
		get: func(c *Config) string { return c.RequirePass },
		set: func(c *Config, v string) error { c.RequirePass = v; return nil },
	},
}

// nodeParams are settings of each node (its address, files, cluster identity): CONFIG
// SET refuses them (the cluster would break), CONFIG GET reports the first master's
// value, or the proxy's address for port and bind, without comparing.
var nodeParams = map[string]bool{
	"port": true, "tls-port": true, "bind": true, "bind-source-addr": true, "unixsocket": true, "dir": true,
	"logfile": true, "pidfile": true, "dbfilename": true, "appendfilename": true, "appenddirname": true,
	"cluster-config-file": true, "cluster-announce-ip": true, "cluster-announce-port": true,
	"cluster-announce-bus-port": true, "cluster-announce-tls-port": true, "cluster-announce-hostname": true,
	"cluster-port": true, "replicaof": true, "slaveof": true, "masterauth": true, "masteruser": true,
	"cluster-enabled": true, "daemonize": true, "supervised": true, "syslog-ident": true,
}

// fileBound stores v through the configuration file's parser of key, so that CONFIG SET
// accepts no value the file would refuse (a slowlog-max-len of 2^63 once made the next slow
// log resize panic).
func fileBound(c *Config, key, v string) error {
	if err := c.Set(key, v); err != nil {
		return fmt.Errorf("argument is outside what the configuration file allows (%v)", err)
	}
	return nil
}

func configSetError(param, why string) []byte {
	return resp.ErrorReply(fmt.Sprintf("ERR CONFIG SET failed (possibly related to argument '%s') - %s", param, why))
}

// configSet applies CONFIG SET: the proxy's own settings to the proxy, the others to every
// node. Like Redis it is all or nothing as far as the proxy can make it: the proxy's
// values are checked first and applied only when every node accepted the rest.
func configSet(ss *session, r *request) bool {
	args := r.args
	if len(args) < 4 || len(args)%2 != 0 {
		reply := wrongArgs("config|set")
		if len(args) > 4 {
			reply = resp.ErrorReply("ERR syntax error")
		}
		return localHandler(func(*session, *request) []byte { return reply })(ss, r)
	}
	seen := map[string]bool{}
	var fail []byte
	next := *ss.s.conf()
	own := false
	fwd := [][]byte{args[0], args[1]}
	for i := 2; i < len(args); i += 2 {
		name := strings.ToLower(string(args[i]))
		if seen[name] {
			fail = configSetError(string(args[i]), "duplicate parameter")
			break
		}
		seen[name] = true
		if p, ok := proxyParams[name]; ok {
			if err := p.set(&next, string(args[i+1])); err != nil {
				fail = configSetError(name, err.Error())
				break
			}
			own = true
			continue
		}
		if nodeParams[name] {
			fail = configSetError(name, "not supported by the proxy (a setting of each cluster node)")
			break
		}
		fwd = append(fwd, args[i], args[i+1])
	}
	if fail != nil {
		return localHandler(func(*session, *request) []byte { return fail })(ss, r)
	}
	s := ss.s
	apply := func() {
		for {
			old := s.cfgp.Load()
			cur := *old
			for i := 2; i < len(args); i += 2 {
				if p, ok := proxyParams[strings.ToLower(string(args[i]))]; ok {
					p.set(&cur, p.get(&next))
				}
			}
			if s.cfgp.CompareAndSwap(old, &cur) {
				break
			}
		}
		if own {
			s.log.Info("proxy settings changed by CONFIG SET", "client_id", ss.id)
		}
	}
	if len(fwd) == 2 {
		return localHandler(func(*session, *request) []byte { apply(); return replyOK })(ss, r)
	}
	m := s.cl.smap.Load()
	if m == nil {
		return false
	}
	fanoutTo(ss, r, m.everyNode(), fwd, func(parts []*request, replies [][]byte) []byte {
		if e := nodesError(parts, replies, isOK); e != nil {
			return e
		}
		apply()
		return replyOK
	})
	return true
}

// mergeConfigGet merges the masters' CONFIG GET replies: a setting must have one value on
// every master (else an error naming them); the proxy's own settings show the proxy's
// values, the nodes' own addresses and files the first master's (port and bind: the
// proxy's).
func (s *Server) mergeConfigGet(parts []*request, replies [][]byte) []byte {
	if e := nodesError(parts, replies, func(rep []byte) bool { return len(rep) > 0 && rep[0] == '*' }); e != nil {
		return e
	}
	type pair struct{ name, value string }
	per := make([]map[string]string, len(replies))
	var order []string
	for i, rep := range replies {
		elems, ok := resp.SplitArray(rep)
		if !ok || len(elems)%2 != 0 {
			return resp.ErrorReply("ERR proxy: unexpected CONFIG GET reply from " + parts[i].pinned.addr)
		}
		per[i] = map[string]string{}
		for j := 0; j < len(elems); j += 2 {
			k, _ := bulkValue(elems[j])
			v, _ := bulkValue(elems[j+1])
			per[i][k] = v
			if i == 0 {
				order = append(order, k)
			}
		}
	}
	cfg := s.conf()
	host, port, _ := net.SplitHostPort(cfg.Listen)
	var out []pair
	var disagree []string
	for _, k := range order {
		if p, ok := proxyParams[k]; ok {
			out = append(out, pair{k, p.get(cfg)})
			continue
		}
		switch {
		case k == "port":
			out = append(out, pair{k, port})
			continue
		case k == "bind":
			out = append(out, pair{k, host})
			continue
		case nodeParams[k]:
			out = append(out, pair{k, per[0][k]})
			continue
		}
		values := map[string][]string{}
		for i := range per {
			v, ok := per[i][k]
			if !ok {
				v = "(not set)"
			}
			values[v] = append(values[v], parts[i].pinned.addr)
		}
		if len(values) > 1 {
			var d []string
			for v, addrs := range values {
				d = append(d, fmt.Sprintf("'%s' on %s", v, strings.Join(addrs, ", ")))
			}
			sort.Strings(d)
			disagree = append(disagree, k+" is "+strings.Join(d, "; "))
			continue
		}
		out = append(out, pair{k, per[0][k]})
	}
	if disagree != nil {
		return resp.ErrorReply("ERR proxy: masters disagree: " + strings.Join(disagree, "; "))
	}
	b := resp.AppendArrayHeader(nil, 2*len(out))
	for _, p := range out {
		b = resp.AppendBulkString(b, p.name)
		b = resp.AppendBulkString(b, redactConfigValue(p.name, p.value))
	}
	return b
}

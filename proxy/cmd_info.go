package proxy

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// INFO for the cluster as one server. Sections are Redis 7's, in its order; the proxy
// adds its own "proxy" section. server comes from the first master with the proxy's
// process fields; clients and cpu are the proxy's; memory, persistence, stats,
// commandstats, errorstats, latencystats and keyspace are merged over the masters.

var infoOrder = []string{"server", "clients", "memory", "persistence", "stats", "replication", "cpu", "modules",
	"commandstats", "errorstats", "latencystats", "cluster", "keyspace", "proxy"}

var infoDefault = map[string]bool{"server": true, "clients": true, "memory": true, "persistence": true, "stats": true,
	"replication": true, "cpu": true, "modules": true, "errorstats": true, "cluster": true, "keyspace": true, "proxy": true}

// infoTitle is the section header Redis prints.
var infoTitle = map[string]string{"server": "Server", "clients": "Clients", "memory": "Memory", "persistence": "Persistence",
	"stats": "Stats", "replication": "Replication", "cpu": "CPU", "modules": "Modules", "commandstats": "Commandstats",
	"errorstats": "Errorstats", "latencystats": "Latencystats", "cluster": "Cluster", "keyspace": "Keyspace", "proxy": "Proxy"}

// fromNodes are the sections that need the masters' INFO.
var fromNodes = map[string]bool{"server": true, "memory": true, "persistence": true, "stats": true, "replication": true,
	"modules": true, "commandstats": true, "errorstats": true, "latencystats": true, "keyspace": true}

// infoSection is one section of a node's INFO: its fields in order.
type infoSection struct {
	keys []string
	vals map[string]string
}

func (sec *infoSection) set(k, v string) {
	if _, ok := sec.vals[k]; !ok {
		sec.keys = append(sec.keys, k)
	}
	sec.vals[k] = v
}

// parseInfoSections splits INFO text into its sections (by lower-case name).
func parseInfoSections(text string) map[string]*infoSection {
	out := map[string]*infoSection{}
	var cur *infoSection
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.HasPrefix(line, "# ") {
			cur = &infoSection{vals: map[string]string{}}
			out[strings.ToLower(strings.TrimPrefix(line, "# "))] = cur
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok && cur != nil {
			cur.set(k, v)
		}
	}
	return out
}

// execInfo answers INFO [section …].
func execInfo(ss *session, r *request) []byte {
	want := map[string]bool{}
	if len(r.args) == 1 {
		want = infoDefault
	}
	for _, a := range r.args[1:] {
		switch name := strings.ToLower(string(a)); name {
		case "default":
			for k := range infoDefault {
				want[k] = true
			}
		case "all", "everything":
			for _, k := range infoOrder {
				want[k] = true
			}
		default:
			want[name] = true
		}
	}
	need := false
	for k := range want {
		need = need || fromNodes[k]
	}
	var nodes []map[string]*infoSection
	if m := ss.s.cl.smap.Load(); need && m != nil {
		parts := make([]*request, len(m.masters))
		for i, n := range m.masters {
			parts[i] = &request{args: [][]byte{[]byte("INFO"), []byte("everything")}, slot: -1, pinned: n, done: make(chan struct{}, 1), start: r.start}
			parts[i].raw = resp.AppendCommand(nil, parts[i].args...)
			ss.dispatch(parts[i])
		}
		for _, p := range parts {
			if v, ok := bulkValue(ss.await(p)); ok {
				nodes = append(nodes, parseInfoSections(v))
			}
		}
	}
	var out []string
	for _, name := range infoOrder {
		if !want[name] {
			continue
		}
		var b strings.Builder
		b.WriteString("# " + infoTitle[name] + "\r\n")
		if name == "proxy" {
			b.WriteString(strings.TrimPrefix(ss.s.proxyInfo(), "# Proxy\r\n"))
		} else {
			for _, kv := range ss.s.infoSection(name, nodes, portOf(ss.conn.LocalAddr().String())) {
				b.WriteString(kv[0] + ":" + kv[1] + "\r\n")
			}
		}
		out = append(out, strings.TrimSuffix(b.String(), "\r\n")+"\r\n")
	}
	return resp.AppendBulkString(nil, strings.Join(out, "\r\n"))
}

// sections returns the named section of every node that has it.
func sections(nodes []map[string]*infoSection, name string) []*infoSection {
	var out []*infoSection
	for _, n := range nodes {
		if sec := n[name]; sec != nil {
			out = append(out, sec)
		}
	}
	return out
}

// unionKeys returns the keys of secs in first-seen order.
func unionKeys(secs []*infoSection) []string {
	seen := map[string]bool{}
	var keys []string
	for _, sec := range secs {
		for _, k := range sec.keys {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// mergeNumbers merges one field over secs: integers and decimals are added (or the
// maximum taken, with useMax), other values are the first node's.
func mergeNumbers(secs []*infoSection, k string, useMax bool) string {
	var isum int64
	var fsum float64
	ints, floats := true, true
	first := ""
	for i, sec := range secs {
		v, ok := sec.vals[k]
		if !ok {
			continue
		}
		if i == 0 || first == "" {
			first = v
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			if useMax {
				isum = max(isum, n)
			} else {
				isum += n
			}
		} else {
			ints = false
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil && strings.Contains(v, ".") {
			if useMax {
				fsum = max(fsum, f)
			} else {
				fsum += f
			}
		} else {
			floats = false
		}
	}
	switch {
	case ints:
		return strconv.FormatInt(isum, 10)
	case floats:
		return strconv.FormatFloat(fsum, 'f', decimals(first), 64)
	}
	return first
}

func decimals(v string) int {
	if i := strings.IndexByte(v, '.'); i >= 0 {
		return len(v) - i - 1
	}
	return 0
}

// mergeFields merges "a=1,b=2" values field by field (commandstats, errorstats,
// latencystats, keyspace).
func mergeFields(secs []*infoSection, k string, combine func(field string, vals []float64) float64, format func(field string, v float64) string) string {
	var order []string
	vals := map[string][]float64{}
	for _, sec := range secs {
		v, ok := sec.vals[k]
		if !ok {
			continue
		}
		for _, f := range strings.Split(v, ",") {
			name, x, _ := strings.Cut(f, "=")
			n, err := strconv.ParseFloat(x, 64)
			if err != nil {
				continue
			}
			if _, ok := vals[name]; !ok {
				order = append(order, name)
			}
			vals[name] = append(vals[name], n)
		}
	}
	parts := make([]string, 0, len(order))
	for _, name := range order {
		parts = append(parts, name+"="+format(name, combine(name, vals[name])))
	}
	return strings.Join(parts, ",")
}

func sumAll(_ string, v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s
}

func maxAll(_ string, v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func formatInt(_ string, v float64) string { return strconv.FormatInt(int64(v), 10) }

// humanBytes formats n as Redis's *_human fields do.
func humanBytes(n int64) string {
	f := float64(n)
	for _, u := range []struct {
		unit string
		size float64
	}{{"P", 1 << 50}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if f >= u.size {
			return fmt.Sprintf("%.2f%s", f/u.size, u.unit)
		}
	}
	return fmt.Sprintf("%dB", n)
}

func cpuSeconds(tv syscall.Timeval) string {
	return fmt.Sprintf("%.6f", float64(tv.Sec)+float64(tv.Usec)/1e6)
}

// infoSection returns the fields of one INFO section: the proxy's own, or the nodes'
// merged (infoBuilders).
func (s *Server) infoSection(name string, nodes []map[string]*infoSection, port string) [][2]string {
	var out [][2]string
	if build := infoBuilders[name]; build != nil {
		build(s, sections(nodes, name), port, func(k, v string) { out = append(out, [2]string{k, v}) })
	}
	return out
}

// infoBuilders builds each INFO section from the nodes' sections (secs) with add.
var infoBuilders = map[string]func(s *Server, secs []*infoSection, port string, add func(k, v string)){
	"server":       infoServer,
	"clients":      infoClients,
	"cpu":          infoCPU,
	"cluster":      infoCluster,
	"replication":  infoReplication,
	"memory":       infoMemory,
	"persistence":  infoPersistence,
	"stats":        infoStats,
	"modules":      infoModules,
	"commandstats": infoCommandStats,
	"errorstats":   infoErrorStats,
	"latencystats": infoLatencyStats,
	"keyspace":     infoKeyspace,
}

func infoServer(s *Server, secs []*infoSection, port string, add func(k, v string)) {
	up := time.Since(s.started)
	proxyOwn := map[string]string{"redis_mode": "standalone", "process_id": strconv.Itoa(os.Getpid()), "run_id": s.nodeID(),
		"tcp_port": port, "uptime_in_seconds": strconv.Itoa(int(up.Seconds())),
		"uptime_in_days": strconv.Itoa(int(up.Hours() / 24)), "executable": "", "config_file": ""}
	if len(secs) == 0 {
		add("redis_version", "")
		for _, k := range []string{"redis_mode", "process_id", "run_id", "tcp_port", "uptime_in_seconds", "uptime_in_days"} {
			add(k, proxyOwn[k])
		}
	}
	if len(secs) > 0 {
		for _, k := range secs[0].keys {
			if v, ok := proxyOwn[k]; ok {
				add(k, v)
			} else {
				add(k, secs[0].vals[k])
			}
		}
	}
	add("proxy", "redis-carp-proxy")
	add("proxy_version", Version)
	add("proxy_os", runtime.GOOS+" "+runtime.GOARCH)
}

func infoClients(s *Server, secs []*infoSection, port string, add func(k, v string)) {
	c := s.conf()
	blocked := strconv.FormatInt(s.blocked.Load(), 10)
	add("connected_clients", strconv.Itoa(s.Clients()))
	add("cluster_connections", "0")
	add("maxclients", strconv.Itoa(c.MaxClients))
	add("client_recent_max_input_buffer", "0")
	add("client_recent_max_output_buffer", "0")
	add("blocked_clients", blocked)
	add("tracking_clients", strconv.Itoa(s.track.clientCount()))
	add("clients_in_timeout_table", blocked)
}

func infoCPU(s *Server, secs []*infoSection, port string, add func(k, v string)) {
	var self, children syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	add("used_cpu_sys", cpuSeconds(self.Stime))
	add("used_cpu_user", cpuSeconds(self.Utime))
	add("used_cpu_sys_children", cpuSeconds(children.Stime))
	add("used_cpu_user_children", cpuSeconds(children.Utime))
}

func infoCluster(s *Server, secs []*infoSection, port string, add func(k, v string)) {
	add("cluster_enabled", "0")
}

func infoReplication(s *Server, secs []*infoSection, port string, add func(k, v string)) {
	if len(secs) == 0 {
		add("role", "master")
		add("connected_slaves", "0")
		return
	}
	for _, k := range secs[0].keys {
		switch {
		case strings.HasPrefix(k, "slave") && k != "slave_read_only":
			// the nodes' replicas, by address: not the proxy's
		case k == "connected_slaves" || k == "master_repl_offset":
			add(k, mergeNumbers(secs, k, false))
		default:
			add(k, secs[0].vals[k])
		}
	}
}

func infoMemory(s *Server, secs []*infoSection, port string, add func(k, v string)) {
	for _, k := range unionKeys(secs) {
		switch {
		case strings.HasSuffix(k, "_human"):
			base := strings.TrimSuffix(k, "_human")
			if n, err := strconv.ParseInt(mergeNumbers(secs, base, base == "used_memory_peak"), 10, 64); err == nil {
				add(k, humanBytes(n))
			} else {
				add(k, secs[0].vals[k])
			}
		case strings.HasSuffix(k, "_ratio") || strings.HasSuffix(k, "_perc") || k == "number_of_cached_scripts" || strings.HasPrefix(k, "used_memory_scripts"):
			add(k, mergeNumbers(secs, k, true))
		default:
			add(k, mergeNumbers(secs, k, false))
		}
	}
}

func infoPersistence(s *Server, secs []*infoSection, port string, add func(k, v string)) {
	for _, k := range unionKeys(secs) {
		switch {
		case k == "rdb_changes_since_last_save" || strings.HasPrefix(k, "current_save_keys") || strings.HasPrefix(k, "current_cow"):
			add(k, mergeNumbers(secs, k, false))
		case strings.HasSuffix(k, "_status"):
			v := "ok"
			for _, sec := range secs {
				if x := sec.vals[k]; x != "" && x != "ok" {
					v = x
				}
			}
			add(k, v)
		default:
			add(k, mergeNumbers(secs, k, true))
		}
	}
}

func infoStats(s *Server, secs []*infoSection, port string, add func(k, v string)) {
	for _, k := range unionKeys(secs) {
		if v, ok := s.track.infoField(k); ok {
			add(k, v) // the proxy's own tracking table, not the nodes' (tracking.go)
			continue
		}
		add(k, mergeNumbers(secs, k, k == "latest_fork_usec"))
	}
}

func infoModules(s *Server, secs []*infoSection, port string, add func(k, v string)) {
	for _, k := range unionKeys(secs) {
		add(k, secs[0].vals[k])
	}
}

func infoCommandStats(s *Server, secs []*infoSection, port string, add func(k, v string)) {
	for _, k := range unionKeys(secs) {
		v := mergeFields(secs, k, sumAll, formatInt)
		calls, usec := statField(v, "calls"), statField(v, "usec")
		per := 0.0
		if calls > 0 {
			per = float64(usec) / float64(calls)
		}
		// Redis's field order: calls, usec, usec_per_call, rejected_calls, failed_calls.
		add(k, fmt.Sprintf("calls=%d,usec=%d,usec_per_call=%.2f,rejected_calls=%d,failed_calls=%d",
			calls, usec, per, statField(v, "rejected_calls"), statField(v, "failed_calls")))
	}
}

func infoErrorStats(s *Server, secs []*infoSection, port string, add func(k, v string)) {
	for _, k := range unionKeys(secs) {
		add(k, mergeFields(secs, k, sumAll, formatInt))
	}
}

func infoLatencyStats(s *Server, secs []*infoSection, port string, add func(k, v string)) {
	// Percentiles do not add up; the highest over the masters bounds the cluster's.
	for _, k := range unionKeys(secs) {
		add(k, mergeFields(secs, k, maxAll, func(_ string, v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }))
	}
}

func infoKeyspace(s *Server, secs []*infoSection, port string, add func(k, v string)) {
	for _, k := range unionKeys(secs) {
		var keys, expires, ttlWeighted int64
		for _, sec := range secs {
			v, ok := sec.vals[k]
			if !ok {
				continue
			}
			e := int64(statField(v, "expires"))
			keys += int64(statField(v, "keys"))
			expires += e
			ttlWeighted += int64(statField(v, "avg_ttl")) * e
		}
		avg := int64(0)
		if expires > 0 {
			avg = ttlWeighted / expires
		}
		add(k, fmt.Sprintf("keys=%d,expires=%d,avg_ttl=%d", keys, expires, avg))
	}
}

// statField returns the integer field of a "a=1,b=2" value.
func statField(v, field string) int64 {
	for _, f := range strings.Split(v, ",") {
		if k, x, ok := strings.Cut(f, "="); ok && k == field {
			n, _ := strconv.ParseInt(x, 10, 64)
			return n
		}
	}
	return 0
}

func portOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[i+1:]
	}
	return addr
}

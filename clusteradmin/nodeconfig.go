package clusteradmin

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Settings that let the nodes of a cluster on several hosts reach each other. Both are
// checked before Create changes anything, and named while it waits.
//
//   - protected-mode yes with a default user without password: Redis accepts only
//     loopback clients, so a replica on another host is refused (its log says
//     "-DENIED Redis is running in protected mode") and its replication link never
//     comes up. redis init writes protected-mode no; access is restricted with pf.
//   - bind on a specific address without bind-source-addr: outgoing cluster bus and
//     replication connections leave from whatever address the kernel picks (on a CARP
//     MASTER possibly the VIP), so the other nodes see the node at an address they do
//     not know and keep forgetting and re-meeting it. redis init writes
//     bind-source-addr (Redis 7.0+) with the bind address.

// nodeConfig is what configProblem needs from CONFIG GET and ACL GETUSER default.
type nodeConfig struct {
	protectedMode  string // "yes" or "no"
	bind           []string
	bindSourceAddr string
	defaultNoPass  bool // the default user needs no password
}

// isLoopback reports whether a bind address only accepts local connections.
func isLoopback(a string) bool {
	a = strings.TrimPrefix(a, "-") // "-::1": ignore if the address is not available
	ip, err := netip.ParseAddr(a)
	return err == nil && ip.IsLoopback()
}

// configProblem returns why a node so configured cannot be part of a cluster spread over
// hosts, or "". A node bound to loopback only serves a cluster on this host.
func configProblem(c nodeConfig) string {
	remote := false
	for _, b := range c.bind {
		if !isLoopback(b) {
			remote = true
		}
	}
	if !remote {
		return ""
	}
	var why []string
	if c.protectedMode == "yes" && c.defaultNoPass {
		why = append(why, "protected-mode yes without a password: it refuses replicas and the cluster bus from other hosts "+
			"(-DENIED Redis is running in protected mode); set protected-mode no and restrict access with pf")
	}
	specific := ""
	for _, b := range c.bind {
		b = strings.TrimPrefix(b, "-")
		if ip, err := netip.ParseAddr(b); err == nil && !ip.IsLoopback() && !ip.IsUnspecified() {
			specific = b
			break
		}
	}
	if specific != "" && c.bindSourceAddr == "" {
		why = append(why, fmt.Sprintf("bind %s without bind-source-addr: its outgoing cluster bus and replication connections "+
			"may leave from another address of the host (the VIP) and the other nodes keep forgetting it; set bind-source-addr %s", specific, specific))
	}
	return strings.Join(why, "; ")
}

// parseConfigGet reads a CONFIG GET reply (name, value pairs, as go-redis returns it).
func parseConfigGet(kv map[string]string, aclFlags []string) nodeConfig {
	c := nodeConfig{
		protectedMode:  kv["protected-mode"],
		bind:           strings.Fields(kv["bind"]),
		bindSourceAddr: kv["bind-source-addr"],
	}
	for _, f := range aclFlags {
		if f == "nopass" {
			c.defaultNoPass = true
		}
	}
	return c
}

// deniedHint explains a connection refused by protected mode.
func deniedHint(err error) string {
	if err != nil && strings.Contains(err.Error(), "DENIED") {
		return " (protected-mode yes without a password refuses clients from other addresses: set protected-mode no and restrict access with pf)"
	}
	return ""
}

// replicationStatus says why a replica's link to its master is not up, from its INFO
// replication: where it replicates from, since when the link is down, whether a sync is
// under way; and the master's own problem, if it has one.
func replicationStatus(repl, masterProblem string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "replication link to %s:%s is %s", infoField(repl, "master_host"), infoField(repl, "master_port"), infoField(repl, "master_link_status"))
	if s := infoField(repl, "master_link_down_since_seconds"); s != "" && s != "-1" {
		fmt.Fprintf(&b, " for %ss", s)
	}
	if infoField(repl, "master_sync_in_progress") == "1" {
		b.WriteString(", full sync in progress")
	}
	if masterProblem != "" {
		b.WriteString(": the master has " + masterProblem)
	}
	return b.String()
}

// strangers lists the addresses a node's CLUSTER NODES shows that are none of the nodes
// given to Create: a node seen at another address (an outgoing connection from another
// address of its host, bind-source-addr not set) is forgotten and met again. Nothing is
// listed when the nodes were given by host name.
func strangers(lines []nodeLine, addrs []string) []string {
	known := map[netip.AddrPort]bool{}
	for _, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			return nil
		}
		known[ap] = true
	}
	var out []string
	for _, ln := range lines {
		if ln.Addr == "" {
			continue
		}
		ap, err := netip.ParseAddrPort(ln.Addr)
		if err != nil {
			// CLUSTER NODES writes IPv6 without brackets: split at the last colon.
			i := strings.LastIndexByte(ln.Addr, ':')
			if i < 0 {
				continue
			}
			if ap, err = netip.ParseAddrPort("[" + ln.Addr[:i] + "]" + ln.Addr[i:]); err != nil {
				continue
			}
		}
		if !known[ap] {
			out = append(out, ln.Addr)
		}
	}
	return out
}

// readNodeConfig asks a node for the settings configProblem judges.
func readNodeConfig(ctx context.Context, cl *redis.Client) (nodeConfig, error) {
	kv := map[string]string{}
	for _, name := range []string{"protected-mode", "bind", "bind-source-addr", "requirepass"} {
		m, err := cl.ConfigGet(ctx, name).Result()
		if err != nil {
			return nodeConfig{}, fmt.Errorf("CONFIG GET %s: %w", name, err)
		}
		for k, v := range m {
			kv[k] = v
		}
	}
	var flags []string
	if v, err := cl.Do(ctx, "ACL", "GETUSER", "default").Slice(); err == nil {
		for i := 0; i+1 < len(v); i += 2 {
			if k, _ := v[i].(string); k == "flags" {
				if fs, ok := v[i+1].([]any); ok {
					for _, f := range fs {
						if s, ok := f.(string); ok {
							flags = append(flags, s)
						}
					}
				}
			}
		}
	} else if kv["requirepass"] == "" {
		flags = []string{"nopass"}
	}
	return parseConfigGet(kv, flags), nil
}

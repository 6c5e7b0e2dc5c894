package clusteradmin

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// NumSlots is the number of hash slots of a Redis Cluster.
const NumSlots = 16384

// nodeLine is one line of CLUSTER NODES.
type nodeLine struct {
	ID          string
	Addr        string // ip:port, "" for a node without address
	Host        string
	Flags       []string
	MasterID    string // "" for a master
	ConfigEpoch uint64
	Link        string
	Slots       [][2]int
	Migrating   map[int]string // slot → target node ID
	Importing   map[int]string // slot → source node ID
}

func (n nodeLine) has(flag string) bool { return slices.Contains(n.Flags, flag) }

func (n nodeLine) isMaster() bool { return n.has("master") }

func (n nodeLine) failing() bool { return n.has("fail") || n.has("fail?") }

func (n nodeLine) slotCount() int {
	c := 0
	for _, r := range n.Slots {
		c += r[1] - r[0] + 1
	}
	return c
}

// parseNodes parses CLUSTER NODES output.
func parseNodes(s string) ([]nodeLine, error) {
	var out []nodeLine
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("cluster: bad CLUSTER NODES line %q", line)
		}
		addr, _, _ := strings.Cut(f[1], "@")
		if addr, _, _ = strings.Cut(addr, ","); strings.HasPrefix(addr, ":") {
			addr = "" // a node that does not know its own address yet
		}
		n := nodeLine{ID: f[0], Addr: addr, Flags: strings.Split(f[2], ","), Link: f[7],
			Migrating: map[int]string{}, Importing: map[int]string{}}
		if addr != "" {
			n.Host, _, _ = net.SplitHostPort(addr)
		}
		if f[3] != "-" {
			n.MasterID = f[3]
		}
		epoch, err := strconv.ParseUint(f[6], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("cluster: bad config epoch in %q", line)
		}
		n.ConfigEpoch = epoch
		for _, r := range f[8:] {
			if inner, ok := strings.CutPrefix(r, "["); ok {
				inner = strings.TrimSuffix(inner, "]")
				if slot, id, ok := strings.Cut(inner, "->-"); ok {
					s, err := strconv.Atoi(slot)
					if err != nil {
						return nil, fmt.Errorf("cluster: bad slot %q", r)
					}
					n.Migrating[s] = id
				} else if slot, id, ok := strings.Cut(inner, "-<-"); ok {
					s, err := strconv.Atoi(slot)
					if err != nil {
						return nil, fmt.Errorf("cluster: bad slot %q", r)
					}
					n.Importing[s] = id
				}
				continue
			}
			lo, hi, found := strings.Cut(r, "-")
			a, err1 := strconv.Atoi(lo)
			b, err2 := a, error(nil)
			if found {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 != nil || err2 != nil || a < 0 || b < a || b >= NumSlots {
				return nil, fmt.Errorf("cluster: bad slot range %q", r)
			}
			n.Slots = append(n.Slots, [2]int{a, b})
		}
		out = append(out, n)
	}
	return out, nil
}

// myself returns the "myself" line of a node's own CLUSTER NODES.
func myself(lines []nodeLine) (nodeLine, bool) {
	for _, l := range lines {
		if l.has("myself") {
			return l, true
		}
	}
	return nodeLine{}, false
}

// infoField returns field from INFO or CLUSTER INFO output.
func infoField(info, field string) string {
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), field+":"); ok {
			return v
		}
	}
	return ""
}

// newClient returns a control connection to one node, authenticated with password when
// set: short timeouts, no retries (the callers retry where it is safe, within a deadline).
func newClient(addr, password string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, Password: password, DialTimeout: 3 * time.Second, ReadTimeout: 5 * time.Second,
		WriteTimeout: 5 * time.Second, MaxRetries: -1, PoolSize: 2, DisableIdentity: true,
		Protocol: 2,
	})
}

// splitAddrs validates HOST:PORT arguments: each well formed, none twice.
func splitAddrs(addrs []string) ([]string, error) {
	seen := map[string]bool{}
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: want HOST:PORT: %v", ErrBadArgs, a, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("%w: %q: bad port", ErrBadArgs, a)
		}
		if host == "" {
			return nil, fmt.Errorf("%w: %q: the host is required (the address the instance binds)", ErrBadArgs, a)
		}
		norm := net.JoinHostPort(strings.ToLower(host), strconv.Itoa(p))
		if seen[norm] {
			return nil, fmt.Errorf("%w: %s given twice", ErrBadArgs, a)
		}
		seen[norm] = true
		out = append(out, norm)
	}
	return out, nil
}

func hostOf(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// shortID is the first 8 characters of a node ID, for tables.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

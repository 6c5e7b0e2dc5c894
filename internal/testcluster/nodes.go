package testcluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NodeSpec describes one standalone node for StartNodes.
type NodeSpec struct {
	// Host is the loopback address the node binds to; default 127.0.0.1. Any 127.0.0.0/8
	// address works on Linux, so several hosts can be simulated on one machine.
	Host string
	// Port is the node's port; 0 picks a free one (with its cluster bus port free too).
	Port int
	// Config, if set, is the configuration file the node starts with (for example one
	// written by `redis init`): it is copied with its dir, logfile and pidfile lines
	// pointing into the node's temporary directory instead, daemonize turned off and port
	// set to Port; every other line is kept (its bind must be Host). Otherwise a cluster-enabled configuration like New's is
	// written.
	Config string
}

// NewNodes starts standalone cluster-enabled nodes for a test, without creating a cluster,
// and stops them when the test ends.
func NewNodes(t testing.TB, opts Options, specs []NodeSpec) *Cluster {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := StartNodes(ctx, opts, specs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// StartNodes starts one redis-server per spec and waits until each answers PING. The
// nodes are cluster-enabled but not joined: each knows only itself and owns no slot.
// The returned Cluster's Client, Kill, Restart, WaitHealthy and Close work on them.
func StartNodes(ctx context.Context, opts Options, specs []NodeSpec) (*Cluster, error) {
	c, err := newCluster(opts, "testnodes-", false)
	if err != nil {
		return nil, err
	}
	opts = c.opts
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	taken := map[int]bool{}
	for _, s := range specs {
		if s.Port != 0 {
			taken[s.Port], taken[s.Port+10000] = true, true
		}
	}
	for i, s := range specs {
		host := s.Host
		if host == "" {
			host = "127.0.0.1"
		}
		port := s.Port
		if port == 0 {
			if port, err = freePortOn(host, taken); err != nil {
				return nil, err
			}
		}
		n := &Node{Addr: net.JoinHostPort(host, strconv.Itoa(port)), Port: port,
			Dir: filepath.Join(c.dir, fmt.Sprintf("%d-%s-%d", i, host, port))}
		if err := os.MkdirAll(n.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("testcluster: %w", err)
		}
		if s.Config == "" {
			if err := c.writeConfig(n); err != nil {
				return nil, err
			}
			if host != "127.0.0.1" {
				f, err := os.OpenFile(filepath.Join(n.Dir, "redis.conf"), os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					return nil, fmt.Errorf("testcluster: %w", err)
				}
				fmt.Fprintf(f, "bind %s\nbind-source-addr %s\n", host, host)
				f.Close()
			}
		} else if err := copyConfig(s.Config, n); err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		if err := c.startNode(ctx, n); err != nil {
			return nil, err
		}
	}
	opts.Logf("started %d standalone cluster-enabled redis-server processes in %s", len(c.Nodes), c.dir)
	ok = true
	return c, nil
}

// copyConfig writes src to the node's redis.conf with its paths moved into the node's
// directory (redis-server changes to dir while reading the file, so a command-line
// override comes too late for a directory that does not exist here).
func copyConfig(src string, n *Node) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("testcluster: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		switch strings.ToLower(strings.SplitN(strings.TrimSpace(line), " ", 2)[0]) {
		case "dir", "logfile", "pidfile", "daemonize", "port":
			line = "# testcluster: " + line
		}
		out = append(out, line)
	}
	out = append(out, "dir "+n.Dir, "logfile "+filepath.Join(n.Dir, "redis.log"),
		"pidfile "+filepath.Join(n.Dir, "redis.pid"), "daemonize no", "port "+strconv.Itoa(n.Port))
	return os.WriteFile(filepath.Join(n.Dir, "redis.conf"), []byte(strings.Join(out, "\n")+"\n"), 0o644)
}

// freePortOn picks a port p free on host whose bus port p+10000 is free too, and marks
// both taken.
func freePortOn(host string, taken map[int]bool) (int, error) {
	for tries := 0; tries < 1000; tries++ {
		p := 20000 + rand.IntN(30000)
		if taken[p] || taken[p+10000] || taken[p-10000] {
			continue
		}
		if portFreeOn(host, p) && portFreeOn(host, p+10000) {
			taken[p], taken[p+10000] = true, true
			return p, nil
		}
	}
	return 0, errors.New("testcluster: no free loopback ports on " + host)
}

func portFreeOn(host string, p int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

package testcluster

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestStartNodesStandaloneOnSeveralHosts(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "op.conf")
	// An operator's file with paths that do not exist here: they are redirected.
	if err := os.WriteFile(conf, []byte("bind 127.0.0.3\nprotected-mode no\ndaemonize yes\ndir /nonexistent/db\nlogfile /nonexistent/x.log\npidfile /nonexistent/x.pid\ncluster-enabled yes\ncluster-config-file nodes-x.conf\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := NewNodes(t, Options{}, []NodeSpec{{}, {Host: "127.0.0.2"}, {Host: "127.0.0.3", Config: conf}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, want := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		n := c.Nodes[i]
		if h, _, _ := net.SplitHostPort(n.Addr); h != want {
			t.Fatalf("node %d at %s, want host %s", i, n.Addr, want)
		}
		info, err := c.Client(n).ClusterInfo(ctx).Result()
		if err != nil || !strings.Contains(info, "cluster_known_nodes:1\r") || !strings.Contains(info, "cluster_slots_assigned:0\r") {
			t.Fatalf("%s: %v\n%s", n.Addr, err, info)
		}
		if i > 0 {
			// Bound to its own address only.
			if conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port)), time.Second); err == nil {
				conn.Close()
				t.Fatalf("%s also answers on 127.0.0.1", n.Addr)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(c.Nodes[2].Dir, "nodes-x.conf")); err != nil {
		t.Fatalf("operator config's cluster-config-file not used in the node dir: %v", err)
	}
}

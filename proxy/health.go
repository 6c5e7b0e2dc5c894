package proxy

import (
	"context"
	"strings"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// Node health: a node that shows the first sign of trouble (commands waiting longer than
// backend-suspect-after for a reply, a backend timeout, a refused, failed or reset
// connection) becomes suspect. The slot map is then refreshed at once, from another node
// (a suspect node is asked last, the replicas of a suspect master first: the replica that
// wins the election knows first), and again every slotmap-fast-refresh-interval while a
// suspect node still serves slots or CLUSTER NODES flags a node that serves slots fail? or
// fail. A node stops being suspect when it answers again (a reply, or a new connection
// that answers its hand-shake).
//
// When a refresh moves slots away from a suspect or failing node (the cluster promoted its
// replica), the proxy abandons that node's connections at once rather than waiting for
// backend-read-timeout: commands already written fail with errFailedOver (their fate is
// unknown: a frozen master may still execute them when it wakes up, before it learns that
// it was replaced, so they are never re-sent), and commands not yet written (bytes still in
// a loop connection's output buffer or waiting for the connection to be dialled) fail with
// ErrNotSent, which re-routes them to the new owner.

// markSuspect records the first sign that n is unwell (reason is a metric label: slow,
// timeout, connect, connection_lost) and asks for a slot map refresh. Only the transition
// is logged and counted.
func (c *cluster) markSuspect(n *node, reason string) {
	if n.suspect.Swap(true) {
		return
	}
	c.metrics.suspectNodes.Set(float64(c.suspects.Add(1)))
	c.metrics.suspectTotal.WithLabelValues(n.addr, reason).Inc()
	c.log.Warn("cluster node suspect; refreshing the slot map", "node", n.addr, "reason", reason)
	// A refresh that is asking this very node now would wait for it: give it up, the next
	// candidate is asked.
	if f := c.fetching.Load(); f != nil && f.addr == n.addr {
		f.cancel()
	}
	c.requestRefresh(refreshSuspect)
}

// nodeAnswered clears n's suspicion once it answers again.
func (c *cluster) nodeAnswered(n *node) {
	if !n.suspect.Load() || !n.suspect.Swap(false) {
		return
	}
	c.metrics.suspectNodes.Set(float64(c.suspects.Add(-1)))
	c.log.Info("cluster node answers again; no longer suspect", "node", n.addr)
}

// fetchingNode is the node a refresh is asking now, and how to give that up.
type fetchingNode struct {
	addr   string
	cancel context.CancelFunc
}

// unsettled reports whether the slot map should be refreshed at the fast interval: a node
// that serves slots is suspect, or the last CLUSTER NODES flagged one fail? or fail.
func (c *cluster) unsettled() bool {
	if c.failFlagged.Load() {
		return true
	}
	if c.suspects.Load() == 0 {
		return false
	}
	m := c.smap.Load()
	if m == nil {
		return true
	}
	for _, n := range m.masters {
		if n.suspect.Load() {
			return true
		}
	}
	return false
}

// failingMasters returns the addresses of the nodes that serve slots and are flagged fail?
// or fail in a CLUSTER NODES reply.
func failingMasters(text string) map[string]bool {
	var out map[string]bool
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 9 { // no slots
			continue
		}
		failing := false
		for _, fl := range strings.Split(f[2], ",") {
			if fl == "fail" || fl == "fail?" {
				failing = true
			}
		}
		if !failing {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		if out == nil {
			out = map[string]bool{}
		}
		out[addr] = true
	}
	return out
}

// abandonLost abandons the connections of every node of old that lost slots in m while it
// is suspect or flagged failing.
func (c *cluster) abandonLost(old, m *slotMap, failing map[string]bool) {
	if old == nil {
		return
	}
	var lost map[*node]bool
	for s := 0; s < command.NumSlots; s++ {
		n := old.master(s)
		if n == m.master(s) || lost[n] || !n.suspect.Load() && !failing[n.addr] {
			continue
		}
		if lost == nil {
			lost = map[*node]bool{}
		}
		lost[n] = true
	}
	for n := range lost {
		c.log.Warn("slots moved away from an unwell node; abandoning its connections (commands sent fail, commands not sent go to the new owner)",
			"node", n.addr, "suspect", n.suspect.Load(), "flagged_failing", failing[n.addr])
		c.metrics.abandoned.WithLabelValues(n.addr).Inc()
		if c.onAbandon != nil {
			c.onAbandon(n)
		}
	}
}

// abandon fails the loop connection: commands written fail with errFailedOver, the others
// are re-routed (ErrNotSent, through the slow path, to the new owner).
func (b *lbackend) abandon() {
	if b.inflight.len() == 0 && b.fd < 0 {
		return
	}
	b.failAll(errFailedOver, nil, "")
}

package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// slotMap is an immutable snapshot of which node serves which slot. A new snapshot
// replaces the old one atomically; readers never see a partial update.
type slotMap struct {
	owner    [command.NumSlots]uint16 // index into masters
	masters  []*node
	replicas [][]*node // replicas[i] are the replicas of masters[i]
	epoch    uint64    // increases with every accepted map
	loaded   time.Time
}

// master returns the node serving slot.
func (m *slotMap) master(slot int) *node { return m.masters[m.owner[slot]] }

// sameOwner reports whether slot is served by the same master in m as in old (the map a
// client's commands in flight were routed by). When it is not, a command for slot must wait
// for those commands: a SET still at the old owner, about to answer MOVED, and the GET after
// it sent to the new owner could be served in the wrong order.
func (m *slotMap) sameOwner(old *slotMap, slot int) bool {
	return m == old || m.master(slot) == old.master(slot)
}

// routeOrder keeps a client's commands in order across slot map changes: it remembers the
// map the client's commands in flight were routed by.
type routeOrder struct{ sent *slotMap }

// admit reports whether a command for slot, routed by m, may be sent now: always when the
// client has nothing in flight (idle; m is then remembered), else when slot has the same
// owner in m as in the remembered map (sameOwner).
func (o *routeOrder) admit(m *slotMap, slot int, idle bool) bool {
	if idle || o.sent == nil {
		o.sent = m
		return true
	}
	return m.sameOwner(o.sent, slot)
}

// withOwner returns a copy of m in which slot is served by n (used on MOVED, until the next
// full refresh confirms it).
func (m *slotMap) withOwner(slot int, n *node) *slotMap {
	nm := *m
	nm.masters = append([]*node(nil), m.masters...)
	nm.replicas = append([][]*node(nil), m.replicas...)
	idx := -1
	for i, x := range nm.masters {
		if x == n {
			idx = i
		}
	}
	if idx < 0 {
		idx = len(nm.masters)
		nm.masters = append(nm.masters, n)
		nm.replicas = append(nm.replicas, nil)
	}
	old := nm.owner[slot]
	nm.owner[slot] = uint16(idx)
	// A master left without slots (its replica took over) is no master any more: fan-out
	// commands must not reach it.
	for s := range nm.owner {
		if nm.owner[s] == old {
			return &nm
		}
	}
	nm.masters = append(nm.masters[:old:old], nm.masters[old+1:]...)
	nm.replicas = append(nm.replicas[:old:old], nm.replicas[old+1:]...)
	for s := range nm.owner {
		if nm.owner[s] > old {
			nm.owner[s]--
		}
	}
	return &nm
}

// refreshReason names what triggered a slot map refresh (also a metric label).
type refreshReason string

const (
	refreshStartup  refreshReason = "startup"
	refreshPeriodic refreshReason = "periodic"
	refreshMoved    refreshReason = "moved"
	refreshDown     refreshReason = "clusterdown"
	refreshConnLoss refreshReason = "connection_loss"
	refreshNoOwner  refreshReason = "unreachable"
	refreshRetry    refreshReason = "retry" // after a failed refresh
	refreshSuspect  refreshReason = "suspect"
	refreshFast     refreshReason = "fast" // every slotmap-fast-refresh-interval while unsettled
)

// requestRefresh asks the refresher for a new slot map. Bursts are coalesced: at most one
// refresh runs at a time, and requests made while one runs cause one more afterwards.
func (c *cluster) requestRefresh(why refreshReason) {
	select {
	case c.refreshCh <- why:
	default:
	}
}

// refresher keeps the slot map current until ctx ends. After a failed refresh it tries
// again within a second (or the refresh interval, if shorter), and it logs the change from
// working to failing and back once each, not every failed attempt. While the cluster is
// unsettled (a node serving slots is suspect or flagged failing, health.go) it refreshes
// every slotmap-fast-refresh-interval.
func (c *cluster) refresher(ctx context.Context) {
	t := time.NewTicker(c.conf().SlotmapRefresh)
	defer t.Stop()
	var retry, fast <-chan time.Time
	failures := 0
	wasUnsettled := false
	for {
		var why refreshReason
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			why = refreshPeriodic
		case <-retry:
			why = refreshRetry
		case <-fast:
			why = refreshFast
		case why = <-c.refreshCh:
		}
		retry, fast = nil, nil
		err := c.refresh(ctx, why)
		fastEvery := c.conf().SlotmapFastRefresh
		if u := c.unsettled(); u != wasUnsettled {
			wasUnsettled = u
			if u {
				c.log.Info("cluster unsettled: refreshing the slot map at the fast interval", "interval", fastEvery)
			} else {
				c.log.Info("cluster settled: slot map refreshed at the normal interval again")
			}
		}
		if wasUnsettled {
			fast = time.After(fastEvery)
		}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if failures == 0 {
				c.log.Warn("slot map refresh failed; keeping the last good map", "trigger", why, "err", err)
			} else {
				c.log.Debug("slot map refresh failed again", "trigger", why, "failures", failures+1, "err", err)
			}
			failures++
			retry = time.After(min(c.conf().SlotmapRefresh, time.Second))
		case failures > 0:
			c.log.Info("slot map refresh works again", "trigger", why, "failed_attempts", failures)
			failures = 0
		}
		// Space refreshes out a little so a storm of MOVED replies does not hammer the
		// cluster; requests that arrived meanwhile are served by one more refresh.
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(20*time.Millisecond, c.conf().SlotmapFastRefresh)):
		}
	}
}

// refresh loads the slot map from the first node that returns one covering every slot.
func (c *cluster) refresh(ctx context.Context, why refreshReason) error {
	start := time.Now()
	var errs []error
	covered := -1 // most slots any node reported, when no node reported all
	for _, addr := range c.refreshCandidates() {
		fctx, cancel := context.WithCancel(ctx)
		c.fetching.Store(&fetchingNode{addr: addr, cancel: cancel})
		if n := c.lookupNode(addr); n != nil && n.suspect.Load() && c.smap.Load() != nil {
			cancel() // became suspect meanwhile: ask the next one
		}
		slots, failing, err := c.fetchSlots(fctx, addr)
		c.fetching.Store(nil)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		m, n, err := c.buildMap(slots)
		covered = max(covered, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		old := c.smap.Load()
		if old != nil {
			m.epoch = old.epoch + 1
		} else {
			m.epoch = 1
		}
		m.loaded = time.Now()
		c.smap.Store(m)
		c.failFlagged.Store(len(failing) > 0)
		c.abandonLost(old, m, failing)
		c.covered.Store(command.NumSlots)
		c.metrics.refreshed(string(why), m, time.Since(start))
		if old == nil || !sameOwners(old, m) {
			c.ownerChanges.notify()
			c.log.Info("slot map updated", "trigger", why, "from", addr, "masters", len(m.masters), "epoch", m.epoch)
		}
		return nil
	}
	if covered >= 0 {
		c.covered.Store(int32(covered))
	}
	c.metrics.refreshFailed(string(why), covered)
	if len(errs) == 0 {
		return errors.New("no cluster node known")
	}
	return errors.Join(errs...)
}

func sameOwners(a, b *slotMap) bool {
	if len(a.masters) != len(b.masters) {
		return false
	}
	for s := 0; s < command.NumSlots; s++ {
		if a.master(s) != b.master(s) {
			return false
		}
	}
	return true
}

// refreshCandidates lists the nodes to ask: the replicas of suspect masters first (the one
// that wins the election knows first), masters of the current map (in random order), the
// seeds, then every other known node; nodes known to be down or suspect come last.
func (c *cluster) refreshCandidates() []string {
	seen := map[string]bool{}
	var good, bad []string
	add := func(addr string) {
		if seen[addr] {
			return
		}
		seen[addr] = true
		if n := c.lookupNode(addr); n != nil && (n.down.Load() || n.suspect.Load()) {
			bad = append(bad, addr)
			return
		}
		good = append(good, addr)
	}
	if m := c.smap.Load(); m != nil {
		for i, n := range m.masters {
			if n.suspect.Load() {
				for _, r := range m.replicas[i] {
					add(r.addr)
				}
			}
		}
		perm := rand.Perm(len(m.masters))
		for _, i := range perm {
			add(m.masters[i].addr)
		}
		for _, rs := range m.replicas {
			for _, r := range rs {
				add(r.addr)
			}
		}
	}
	for _, s := range c.conf().ClusterSeeds {
		add(s)
	}
	c.nodesMu.Lock()
	known := make([]string, 0, len(c.nodes))
	for addr := range c.nodes {
		known = append(known, addr)
	}
	c.nodesMu.Unlock()
	for _, addr := range known { // add takes nodesMu itself
		add(addr)
	}
	return append(good, bad...)
}

// fetchSlots asks one node for CLUSTER SLOTS, and in the same round trip for CLUSTER
// NODES, of which it returns the nodes serving slots that are flagged fail? or fail.
func (c *cluster) fetchSlots(ctx context.Context, addr string) ([]redis.ClusterSlot, map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, c.conf().BackendConnectTimeout+c.conf().BackendReadTimeout)
	defer cancel()
	cl := c.controlClient(addr)
	defer cl.Close()
	pipe := cl.Pipeline()
	slots := pipe.ClusterSlots(ctx)
	nodes := pipe.ClusterNodes(ctx)
	if _, err := pipe.Exec(ctx); err != nil && slots.Err() != nil {
		return nil, nil, slots.Err()
	}
	var failing map[string]bool
	if text, err := nodes.Result(); err == nil {
		failing = failingMasters(text)
	}
	return slots.Val(), failing, nil
}

// tlsFor returns the TLS configuration for a control connection to addr (nil: plain).
func (c *cluster) tlsFor(addr string) *tls.Config {
	if c.tls == nil {
		return nil
	}
	tc := c.tls.Clone()
	if host, _, err := net.SplitHostPort(addr); err == nil && tc.ServerName == "" {
		tc.ServerName = host
	}
	return tc
}

// controlClient returns a go-redis client for control-plane queries to addr.
func (c *cluster) controlClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:            addr,
		Username:        c.conf().BackendUser,
		Password:        c.conf().BackendPassword,
		DialTimeout:     c.conf().BackendConnectTimeout,
		DialerRetries:   1, // a dead node must not hold up a refresh: the next candidate is asked
		ReadTimeout:     c.conf().BackendReadTimeout,
		WriteTimeout:    c.conf().BackendReadTimeout,
		PoolSize:        1,
		MaxRetries:      -1,
		DisableIdentity: true,
		Protocol:        2,
		TLSConfig:       c.tlsFor(addr),
	})
}

// buildMap turns a CLUSTER SLOTS reply into a snapshot, rejecting one that does not cover
// every slot. It also returns how many slots the reply covers (-1 if it is malformed).
func (c *cluster) buildMap(slots []redis.ClusterSlot) (*slotMap, int, error) {
	m := &slotMap{}
	for i := range m.owner {
		m.owner[i] = 0xffff
	}
	index := map[*node]int{}
	covered := 0
	for _, r := range slots {
		if len(r.Nodes) == 0 || r.Start < 0 || r.End >= command.NumSlots || r.Start > r.End {
			return nil, -1, fmt.Errorf("bad slot range %d-%d", r.Start, r.End)
		}
		addr := r.Nodes[0].Addr
		if h, _, err := net.SplitHostPort(addr); err == nil && h == "" {
			return nil, -1, fmt.Errorf("node for slots %d-%d has no address", r.Start, r.End)
		}
		mn := c.node(addr)
		idx, ok := index[mn]
		if !ok {
			idx = len(m.masters)
			index[mn] = idx
			m.masters = append(m.masters, mn)
			m.replicas = append(m.replicas, nil)
			for _, rn := range r.Nodes[1:] {
				if rn.Addr != "" {
					m.replicas[idx] = append(m.replicas[idx], c.node(rn.Addr))
				}
			}
		}
		for s := r.Start; s <= r.End; s++ {
			if m.owner[s] == 0xffff {
				covered++
			}
			m.owner[s] = uint16(idx)
		}
	}
	if covered != command.NumSlots {
		return nil, covered, fmt.Errorf("slot map covers %d of %d slots", covered, command.NumSlots)
	}
	return m, covered, nil
}

// waitForMap blocks until a slot map is loaded or ctx ends.
func (c *cluster) waitForMap(ctx context.Context) error {
	for attempt := 0; c.smap.Load() == nil; attempt++ {
		if err := c.refresh(ctx, refreshStartup); err == nil {
			break
		} else if attempt == 0 {
			c.log.Warn("waiting for the cluster", "err", err)
		} else {
			c.log.Debug("still waiting for the cluster", "attempt", attempt+1, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil
}

// resolveAddr fills in the host of a redirection target that Redis sent as ":port".
func resolveAddr(addr, from string) string {
	if len(addr) > 1 && addr[0] == '?' {
		host, _, _ := net.SplitHostPort(from)
		return net.JoinHostPort(host, addr[2:])
	}
	return addr
}

// nodeFor returns the node of m that serves slot for a command with info, by read-from
// (readFrom): for a read-only command, a reachable replica when reads may go to replicas
// (chosen by the client's id, so that one client keeps reading from one replica); else
// the master. It returns nil when read-from is replica and no replica is reachable. The
// one node choice of the fast and the slow path.
func (m *slotMap) nodeFor(slot int, info *command.Info, readFrom string, client uint64) *node {
	if readFrom != "master" && info != nil && info.Flags&(command.Readonly|command.Write) == command.Readonly {
		reps := m.replicas[m.owner[slot]]
		for i := range reps {
			if n := reps[(client+uint64(i))%uint64(len(reps))]; !n.down.Load() {
				return n
			}
		}
		if readFrom == "replica" {
			return nil
		}
	}
	return m.master(slot)
}

// learnOwner records that slot moved to n (from a MOVED reply) and asks for a full refresh.
// A MOVED that agrees with the map (a command sent to an arbitrary node) changes nothing.
func (c *cluster) learnOwner(slot int, n *node) {
	for {
		old := c.smap.Load()
		if old == nil || old.master(slot) == n {
			return
		}
		if c.smap.CompareAndSwap(old, old.withOwner(slot, n)) {
			break
		}
	}
	c.ownerChanges.notify()
	c.requestRefresh(refreshMoved)
}

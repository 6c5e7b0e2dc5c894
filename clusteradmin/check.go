package clusteradmin

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// CheckOptions configures Check.
type CheckOptions struct {
	Seed     string    // HOST:PORT of any node of the cluster
	Out      io.Writer // the table and the problems; default io.Discard
	Password string    // the nodes' requirepass; "" for none
}

// Problem is one thing wrong with a cluster and the command that fixes it.
type Problem struct {
	What string
	Fix  string
}

// checkedNode is a node of the seed's view with its own view of itself.
type checkedNode struct {
	nodeLine  // from its own CLUSTER NODES when reachable, else the seed's
	reachable bool
	state     string // cluster_state it reports
	view      []nodeLine
}

// Check inspects the cluster SEED belongs to: every slot claimed by exactly one master,
// every master with slots has a replica on another host, no replica on its master's
// host, no node seen as fail or pfail, no open slot (MIGRATING/IMPORTING), unique config
// epochs, every node reachable and reporting cluster_state:ok. It prints a table of the
// nodes and every problem with its fix, and returns the problems; err is for a cluster
// that cannot be inspected at all.
func Check(ctx context.Context, o CheckOptions) ([]Problem, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	seeds, err := splitAddrs([]string{o.Seed})
	if err != nil {
		return nil, err
	}
	seed := seeds[0]
	scl := newClient(seed, o.Password)
	s, err := scl.ClusterNodes(ctx).Result()
	scl.Close()
	if err != nil {
		return nil, fmt.Errorf("cluster check: CLUSTER NODES on %s: %w", seed, err)
	}
	seedView, err := parseNodes(s)
	if err != nil {
		return nil, err
	}
	var nodes []*checkedNode
	for _, ln := range seedView {
		cn := &checkedNode{nodeLine: ln}
		nodes = append(nodes, cn)
		if ln.Addr == "" || ln.has("handshake") {
			continue
		}
		cl := newClient(ln.Addr, o.Password)
		s, err := cl.ClusterNodes(ctx).Result()
		var ci string
		if err == nil {
			ci, err = cl.ClusterInfo(ctx).Result()
		}
		cl.Close()
		if err != nil {
			continue
		}
		view, err := parseNodes(s)
		if err != nil {
			return nil, fmt.Errorf("cluster check: %s: %w", ln.Addr, err)
		}
		me, ok := myself(view)
		if !ok || me.ID != ln.ID {
			continue // another node answers at that address now
		}
		me.Addr, me.Host = ln.Addr, ln.Host
		cn.nodeLine, cn.reachable, cn.view, cn.state = me, true, view, infoField(ci, "cluster_state")
	}
	slices.SortFunc(nodes, func(a, b *checkedNode) int { return cmpAddr(a.Addr, b.Addr) })
	byID := map[string]*checkedNode{}
	for _, n := range nodes {
		byID[n.ID] = n
	}
	ps := problems(seed, nodes, byID)
	printTable(o.Out, nodes, byID)
	if len(ps) == 0 {
		masters, replicas := 0, 0
		for _, n := range nodes {
			if n.isMaster() {
				masters++
			} else {
				replicas++
			}
		}
		fmt.Fprintf(o.Out, "OK: %d masters, %d replicas, all %d slots covered once, every master has a replica on another host\n", masters, replicas, NumSlots)
		return nil, nil
	}
	fmt.Fprintf(o.Out, "%d problem(s):\n", len(ps))
	for _, p := range ps {
		fmt.Fprintf(o.Out, "- %s\n  fix: %s\n", p.What, p.Fix)
	}
	return ps, nil
}

func cmpAddr(a, b string) int {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	if c := cmp.Compare(ha, hb); c != 0 {
		return c
	}
	na, _ := strconv.Atoi(pa)
	nb, _ := strconv.Atoi(pb)
	return cmp.Compare(na, nb)
}

// problems lists what is wrong with the cluster whose nodes Check gathered, each with
// its fix: the nodes' health, slot coverage, open slots, config epochs and where the
// replicas are, in that order.
func problems(seed string, nodes []*checkedNode, byID map[string]*checkedNode) []Problem {
	h, p, _ := net.SplitHostPort(seed)
	c := &checker{seed: seed, fixAll: fmt.Sprintf("redis-cli --cluster fix %s", net.JoinHostPort(h, p)), nodes: nodes, byID: byID}
	c.nodeHealth()
	c.slotCoverage()
	c.openSlots()
	c.configEpochs()
	c.replicaPlacement()
	return c.ps
}

// checker gathers the problems of one check.
type checker struct {
	seed   string
	fixAll string // redis-cli --cluster fix SEED
	nodes  []*checkedNode
	byID   map[string]*checkedNode
	ps     []Problem
}

// add records a problem (format and args) and its fix.
func (c *checker) add(fix, format string, args ...any) {
	c.ps = append(c.ps, Problem{What: fmt.Sprintf(format, args...), Fix: fix})
}

// cli is the redis-cli command line that talks to addr.
func cli(addr string) string {
	h, p, _ := net.SplitHostPort(addr)
	return fmt.Sprintf("redis-cli -h %s -p %s", h, p)
}

// nodeHealth reports, node by node, one without an address, one that does not answer,
// one another node sees as failing (pfail or fail), and one that answers but does not
// report cluster_state:ok.
func (c *checker) nodeHealth() {
	for _, n := range c.nodes {
		if n.Addr == "" {
			c.add(fmt.Sprintf("redis-cli --cluster call %s CLUSTER FORGET %s", c.seed, n.ID), "node %s has no address (flags %s)", shortID(n.ID), strings.Join(n.Flags, ","))
			continue
		}
		if !n.reachable {
			c.add(fmt.Sprintf("start it again on %[2]s (service redis start %[1]s, or service valkey start %[1]s); if it is gone for good: redis-cli --cluster call %[3]s CLUSTER FORGET %[4]s", portOf(n.Addr), n.Host, c.seed, n.ID),
				"%s (%s) does not answer", n.Addr, shortID(n.ID))
		}
		var seenBy []string
		for _, o := range c.nodes {
			for _, ln := range o.view {
				if ln.ID == n.ID && ln.failing() {
					flag := "pfail"
					if ln.has("fail") {
						flag = "fail"
					}
					seenBy = append(seenBy, o.Addr+" ("+flag+")")
				}
			}
		}
		if len(seenBy) > 0 {
			c.add(fmt.Sprintf("start it again or repair its network; if it is gone for good: redis-cli --cluster call %s CLUSTER FORGET %s", c.seed, n.ID),
				"%s is seen as failing by %s", n.Addr, strings.Join(seenBy, ", "))
		}
		if n.reachable && n.state != "ok" {
			c.add("fix the other problems; it turns ok once every slot is served", "%s reports cluster_state:%s", n.Addr, n.state)
		}
	}
}

// slotCoverage reports slots no master serves and slots several claim, from each
// master's own claim (the seed's view for an unreachable one).
func (c *checker) slotCoverage() {
	owners := make([][]string, NumSlots)
	for _, n := range c.nodes {
		if !n.isMaster() {
			continue
		}
		for _, r := range n.Slots {
			for s := r[0]; s <= r[1]; s++ {
				owners[s] = append(owners[s], n.Addr)
			}
		}
	}
	for _, r := range slotRuns(owners, func(o []string) bool { return len(o) == 0 }) {
		c.add(c.fixAll, "%s not served by any master", slotsAre(r))
	}
	for _, r := range slotRuns(owners, func(o []string) bool { return len(o) > 1 }) {
		lo, _, _ := strings.Cut(r, "-")
		s, _ := strconv.Atoi(lo)
		c.add(c.fixAll, "%s claimed by several masters: %s", slotsAre(r), strings.Join(owners[s], ", "))
	}
}

// openSlots reports every slot a node has MIGRATING or IMPORTING.
func (c *checker) openSlots() {
	for _, n := range c.nodes {
		for _, s := range sortedKeys(n.Migrating) {
			c.add(fmt.Sprintf("finish the move: %s, or undo it: %s CLUSTER SETSLOT %d STABLE", c.fixAll, cli(n.Addr), s),
				"slot %d is open on %s: MIGRATING to %s", s, n.Addr, addrOf(c.byID, n.Migrating[s]))
		}
		for _, s := range sortedKeys(n.Importing) {
			c.add(fmt.Sprintf("finish the move: %s, or undo it: %s CLUSTER SETSLOT %d STABLE", c.fixAll, cli(n.Addr), s),
				"slot %d is open on %s: IMPORTING from %s", s, n.Addr, addrOf(c.byID, n.Importing[s]))
		}
	}
}

// configEpochs reports a config epoch shared by masters that serve slots.
func (c *checker) configEpochs() {
	epochs := map[uint64][]string{}
	for _, n := range c.nodes {
		if n.isMaster() && n.slotCount() > 0 {
			epochs[n.ConfigEpoch] = append(epochs[n.ConfigEpoch], n.Addr)
		}
	}
	for _, e := range sortedKeys(epochs) {
		if as := epochs[e]; len(as) > 1 {
			c.add(fmt.Sprintf("%s CLUSTER BUMPEPOCH", cli(as[len(as)-1])), "config epoch %d is shared by %s", e, strings.Join(as, ", "))
		}
	}
}

// healthyReplicas maps a master's ID to its reachable, non-failing replicas.
type healthyReplicas map[string][]*checkedNode

// elsewhere counts m's healthy replicas on another host than m's.
func (hr healthyReplicas) elsewhere(m *checkedNode) int {
	n := 0
	for _, r := range hr[m.ID] {
		if r.Host != m.Host {
			n++
		}
	}
	return n
}

// replicaPlacement reports masters with slots and no healthy replica on another host
// (orphans), then replicas on their own master's host.
func (c *checker) replicaPlacement() {
	replicas := healthyReplicas{}
	for _, n := range c.nodes {
		if !n.isMaster() && n.MasterID != "" && !n.failing() && n.reachable {
			replicas[n.MasterID] = append(replicas[n.MasterID], n)
		}
	}
	var orphans []*checkedNode
	for _, n := range c.nodes {
		if n.isMaster() && n.slotCount() > 0 && replicas.elsewhere(n) == 0 {
			orphans = append(orphans, n)
		}
	}
	c.orphanMasters(orphans, replicas)
	c.sameHostReplicas(orphans, replicas)
}

// orphanMasters reports each orphan; its fix makes a node on another host its replica:
// a spare replica (one whose own master keeps a replica on another host) or an empty
// master, else a new instance to be set up there.
func (c *checker) orphanMasters(orphans []*checkedNode, replicas healthyReplicas) {
	// spare reports whether r can replicate another master without leaving its own
	// master without a replica on another host.
	spare := func(r *checkedNode) bool {
		m := c.byID[r.MasterID]
		return m == nil || r.Host == m.Host || replicas.elsewhere(m) > 1
	}
	for _, m := range orphans {
		fix := fmt.Sprintf("on another host than %s, run redis init and start an instance, then: redis-cli -h NEWHOST -p PORT CLUSTER MEET %s %s && redis-cli -h NEWHOST -p PORT CLUSTER REPLICATE %s",
			m.Host, m.Host, portOf(m.Addr), m.ID)
		for _, o := range c.nodes {
			if o.reachable && o.Host != m.Host && ((!o.isMaster() && spare(o)) || (o.isMaster() && o.slotCount() == 0 && len(replicas[o.ID]) == 0)) {
				fix = fmt.Sprintf("%s CLUSTER REPLICATE %s", cli(o.Addr), m.ID)
				break
			}
		}
		c.add(fix, "master %s (%s) has no replica on another host", m.Addr, shortID(m.ID))
	}
}

// sameHostReplicas reports each replica on its master's host; its fix moves it to an
// orphan on another host, else to the master elsewhere with the fewest replicas on
// other hosts, else to another host altogether.
func (c *checker) sameHostReplicas(orphans []*checkedNode, replicas healthyReplicas) {
	for _, r := range c.nodes {
		m := c.byID[r.MasterID]
		if r.isMaster() || m == nil || r.Host != m.Host {
			continue
		}
		fix := "move this instance to another host (redis init there, then cluster reset and create, or CLUSTER MEET + CLUSTER REPLICATE)"
		var target *checkedNode
		for _, o := range orphans {
			if o.Host != r.Host {
				target = o
				break
			}
		}
		if target == nil {
			for _, o := range c.nodes {
				if o.isMaster() && o.slotCount() > 0 && o.Host != r.Host && (target == nil || replicas.elsewhere(o) < replicas.elsewhere(target)) {
					target = o
				}
			}
		}
		if target != nil {
			fix = fmt.Sprintf("%s CLUSTER REPLICATE %s", cli(r.Addr), target.ID)
		}
		c.add(fix, "replica %s is on the same host as its master %s", r.Addr, m.Addr)
	}
}

// slotRuns returns the ranges ("a-b" or "a") of consecutive slots whose owners match.
func slotRuns(owners [][]string, match func([]string) bool) []string {
	var runs []string
	for s := 0; s < NumSlots; s++ {
		if !match(owners[s]) {
			continue
		}
		e := s
		for e+1 < NumSlots && match(owners[e+1]) && slices.Equal(owners[e+1], owners[s]) {
			e++
		}
		if e == s {
			runs = append(runs, strconv.Itoa(s))
		} else {
			runs = append(runs, fmt.Sprintf("%d-%d", s, e))
		}
		s = e
	}
	return runs
}

// slotsAre is "slot N is" or "slots A-B are".
func slotsAre(r string) string {
	if strings.Contains(r, "-") {
		return "slots " + r + " are"
	}
	return "slot " + r + " is"
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	ks := make([]K, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func addrOf(byID map[string]*checkedNode, id string) string {
	if n, ok := byID[id]; ok && n.Addr != "" {
		return n.Addr
	}
	return shortID(id)
}

func printTable(w io.Writer, nodes []*checkedNode, byID map[string]*checkedNode) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tID\tROLE\tMASTER\tSLOTS\tEPOCH\tSTATE")
	for _, n := range nodes {
		role, master, slots := "replica", addrOf(byID, n.MasterID), "-"
		if n.isMaster() {
			role, master, slots = "master", "-", strconv.Itoa(n.slotCount())
		}
		state := "ok"
		switch {
		case !n.reachable:
			state = "unreachable"
		case n.state != "ok":
			state = "cluster_state:" + n.state
		}
		for _, o := range nodes {
			for _, ln := range o.view {
				if ln.ID == n.ID && ln.failing() && !strings.Contains(state, "failing") {
					state += " (failing for some)"
				}
			}
		}
		if len(n.Migrating)+len(n.Importing) > 0 {
			state += " (open slots)"
		}
		addr := n.Addr
		if addr == "" {
			addr = "(no address)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", addr, shortID(n.ID), role, master, slots, n.ConfigEpoch, state)
	}
	tw.Flush()
}

package clusteradmin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// CreateOptions configures Create.
type CreateOptions struct {
	Nodes    []string      // HOST:PORT of every instance of every host
	Replicas int           // replicas per master; default 1, negative: none
	Timeout  time.Duration // bound of each wait (nodes meeting, convergence); default 60s
	Out      io.Writer     // progress; default io.Discard
	Password string        // the nodes' requirepass (redis init's cluster password); "" for none

	// afterStep, if set (tests), is called after each step that changed the nodes.
	afterStep func(step string)
}

// node is one node being created or reset.
type node struct {
	addr string
	id   string
	cl   *redis.Client
}

// Create builds a new cluster from empty, cluster-enabled nodes. It refuses (with every
// reason) if any node is not empty or already knows other nodes, plans and verifies the
// layout, then assigns slots and config epochs, joins the nodes with CLUSTER MEET, sets
// the replicas and waits until every node agrees on the configuration and reports
// cluster_state:ok. Every wait is bounded by Timeout and prints progress.
func Create(ctx context.Context, o CreateOptions) error {
	if o.Replicas == 0 {
		o.Replicas = 1
	} else if o.Replicas < 0 {
		o.Replicas = 0
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	addrs, err := splitAddrs(o.Nodes)
	if err != nil {
		return err
	}
	l, err := planLayout(addrs, o.Replicas)
	if err != nil {
		return err
	}
	nodes := make(map[string]*node, len(addrs))
	for _, a := range addrs {
		nodes[a] = &node{addr: a, cl: newClient(a, o.Password)}
	}
	defer func() {
		for _, n := range nodes {
			n.cl.Close()
		}
	}()

	fmt.Fprintf(o.Out, "checking %d nodes\n", len(addrs))
	if err := preflight(ctx, addrs, nodes, o.Out); err != nil {
		return err
	}
	fmt.Fprintln(o.Out, "layout:")
	for _, m := range l.masters {
		r := l.slots[m]
		fmt.Fprintf(o.Out, "  master %-21s slots %5d-%-5d  replicas %s\n", m, r[0], r[1], strings.Join(l.replicasOf[m], " "))
	}

	// From here on the nodes change: a failure leaves a half-made cluster behind.
	err = create(ctx, o, addrs, l, nodes)
	if err != nil {
		return fmt.Errorf("%w\nthe nodes are now half-joined; recover with: redis-carp-proxy cluster reset %s --yes, then run cluster create again", err, strings.Join(addrs, " "))
	}
	return nil
}

func (o CreateOptions) step(name string) {
	if o.afterStep != nil {
		o.afterStep(name)
	}
}

// preflight refuses nodes that are unreachable, not cluster-enabled, not empty, or
// already part of a cluster; it records the node IDs.
func preflight(ctx context.Context, addrs []string, nodes map[string]*node, out io.Writer) error {
	var problems []string
	ids := map[string]string{}
	for _, a := range addrs {
		n := nodes[a]
		why, err := nodeProblem(ctx, n)
		if err != nil {
			why = "unreachable: " + err.Error() + deniedHint(err)
		}
		if why == "" {
			if other, dup := ids[n.id]; dup {
				why = fmt.Sprintf("has the same node ID as %s (a copied data directory? delete its nodes-*.conf)", other)
			}
			ids[n.id] = a
		}
		if why != "" {
			problems = append(problems, fmt.Sprintf("  %s: %s", a, why))
			continue
		}
		fmt.Fprintf(out, "  %s: empty, id %s\n", a, shortID(n.id))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: refusing to create the cluster:\n%s\n(for nodes left over from a failed create: redis-carp-proxy cluster reset HOST:PORT... --yes)", ErrNotEmpty, strings.Join(problems, "\n"))
	}
	return nil
}

// nodeProblem returns why n cannot join a new cluster, or "".
func nodeProblem(ctx context.Context, n *node) (string, error) {
	info, err := n.cl.Info(ctx, "server", "cluster", "keyspace").Result()
	if err != nil {
		return "", err
	}
	if infoField(info, "cluster_enabled") != "1" {
		return "cluster-enabled is not yes in its configuration", nil
	}
	if v := infoField(info, "redis_version"); v != "" {
		if major, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0]); major < 7 {
			return fmt.Sprintf("redis_version %s: 7.0 or newer is needed", v), nil
		}
	}
	cfg, err := readNodeConfig(ctx, n.cl)
	if err != nil {
		return "", err
	}
	if why := configProblem(cfg); why != "" {
		return why, nil
	}
	ci, err := n.cl.ClusterInfo(ctx).Result()
	if err != nil {
		return "", err
	}
	if k := infoField(ci, "cluster_known_nodes"); k != "1" {
		return fmt.Sprintf("already in a cluster (knows %s nodes)", k), nil
	}
	if s := infoField(ci, "cluster_slots_assigned"); s != "0" {
		return fmt.Sprintf("already owns %s slots", s), nil
	}
	keys, err := n.cl.DBSize(ctx).Result()
	if err != nil {
		return "", err
	}
	if keys > 0 {
		return fmt.Sprintf("holds %d keys", keys), nil
	}
	n.id, err = n.cl.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		return "", err
	}
	return "", nil
}

func create(ctx context.Context, o CreateOptions, addrs []string, l layout, nodes map[string]*node) error {
	fmt.Fprintln(o.Out, "assigning slots (CLUSTER ADDSLOTSRANGE)")
	for _, m := range l.masters {
		r := l.slots[m]
		if err := nodes[m].cl.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", r[0], r[1]).Err(); err != nil {
			return fmt.Errorf("cluster create: ADDSLOTSRANGE %d %d on %s: %w", r[0], r[1], m, err)
		}
	}
	o.step("slots")
	// Distinct config epochs before the nodes meet, so no collision has to be resolved.
	fmt.Fprintln(o.Out, "setting config epochs (CLUSTER SET-CONFIG-EPOCH)")
	for i, a := range addrs {
		if err := nodes[a].cl.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			return fmt.Errorf("cluster create: SET-CONFIG-EPOCH %d on %s: %w", i+1, a, err)
		}
	}
	o.step("epochs")

	fmt.Fprintln(o.Out, "joining the nodes (CLUSTER MEET)")
	first := nodes[addrs[0]]
	meet := func(from *node, to string) error {
		port, _ := strconv.Atoi(portOf(to))
		if err := from.cl.ClusterMeet(ctx, hostOf(to), strconv.Itoa(port)).Err(); err != nil {
			return fmt.Errorf("cluster create: CLUSTER MEET %s from %s: %w", to, from.addr, err)
		}
		return nil
	}
	for _, a := range addrs[1:] {
		if err := meet(first, a); err != nil {
			return err
		}
	}
	// The first node also receives a MEET, so it learns its own address from a peer.
	if err := meet(nodes[addrs[1]], addrs[0]); err != nil {
		return err
	}
	o.step("meet")
	err := wait(ctx, o, "every node knows every other node", func(ctx context.Context) (string, error) {
		var behind []string
		for _, a := range addrs {
			s, err := nodes[a].cl.ClusterNodes(ctx).Result()
			if err != nil {
				behind = append(behind, a+" ("+err.Error()+")")
				continue
			}
			lines, err := parseNodes(s)
			if err != nil {
				return "", err
			}
			known := 0
			for _, ln := range lines {
				if !ln.has("handshake") && !ln.has("noaddr") && ln.Addr != "" {
					known++
				}
			}
			if known < len(addrs) {
				status := fmt.Sprintf("%s knows %d", a, known)
				if st := strangers(lines, addrs); len(st) > 0 {
					status += fmt.Sprintf(" and sees %s, which is none of the nodes (a node connecting from another address: bind-source-addr not set?)", strings.Join(st, " "))
				}
				behind = append(behind, status)
			}
		}
		if len(behind) == 0 {
			return "", nil
		}
		return fmt.Sprintf("%d/%d nodes know all %d: %s", len(addrs)-len(behind), len(addrs), len(addrs), strings.Join(behind, ", ")), nil
	})
	if err != nil {
		return err
	}

	fmt.Fprintln(o.Out, "setting replicas (CLUSTER REPLICATE)")
	for _, m := range l.masters {
		for _, r := range l.replicasOf[m] {
			if err := nodes[r].cl.Do(ctx, "CLUSTER", "REPLICATE", nodes[m].id).Err(); err != nil {
				return fmt.Errorf("cluster create: CLUSTER REPLICATE %s (%s) on %s: %w", shortID(nodes[m].id), m, r, err)
			}
		}
	}
	o.step("replicate")

	epochOf := map[string]int{}
	for i, a := range addrs {
		epochOf[a] = i + 1
	}
	want := expectedConfig(l, nodes, epochOf)
	err = wait(ctx, o, "every node reports cluster_state:ok and the same configuration", func(ctx context.Context) (string, error) {
		return converged(ctx, addrs, nodes, want)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "cluster ok: %d masters, %d replicas, %d slots, config epochs unique\n", len(l.masters), len(addrs)-len(l.masters), NumSlots)
	return nil
}

// expectedConfig is the configuration signature every node must report: per node ID its
// role, master, slots and (for a master) the config epoch it was given.
func expectedConfig(l layout, nodes map[string]*node, epochOf map[string]int) string {
	var sig []string
	for _, m := range l.masters {
		r := l.slots[m]
		sig = append(sig, fmt.Sprintf("%s master epoch %d %d-%d", nodes[m].id, epochOf[m], r[0], r[1]))
		for _, rep := range l.replicasOf[m] {
			sig = append(sig, fmt.Sprintf("%s slave %s", nodes[rep].id, nodes[m].id))
		}
	}
	slices.Sort(sig)
	return strings.Join(sig, "\n")
}

// signature renders a node's view the way expectedConfig does.
func signature(lines []nodeLine) string {
	var sig []string
	for _, ln := range lines {
		if ln.isMaster() {
			var rs []string
			for _, r := range ln.Slots {
				rs = append(rs, fmt.Sprintf("%d-%d", r[0], r[1]))
			}
			sig = append(sig, fmt.Sprintf("%s master epoch %d %s", ln.ID, ln.ConfigEpoch, strings.Join(rs, " ")))
		} else {
			sig = append(sig, fmt.Sprintf("%s slave %s", ln.ID, ln.MasterID))
		}
	}
	slices.Sort(sig)
	return strings.Join(sig, "\n")
}

// converged returns "" when every node has cluster_state:ok, sees the wanted
// configuration (roles, slots and config epochs) without failing or handshaking nodes,
// sees unique config epochs, all report the same current epoch, and every replica's link
// to its master is up; otherwise what is still missing.
func converged(ctx context.Context, addrs []string, nodes map[string]*node, want string) (string, error) {
	var behind []string
	ok := 0
	currentEpochs := map[string]bool{}
	for _, a := range addrs {
		cl := nodes[a].cl
		ci, err := cl.ClusterInfo(ctx).Result()
		if err != nil {
			behind = append(behind, a+": "+err.Error())
			continue
		}
		if st := infoField(ci, "cluster_state"); st != "ok" {
			behind = append(behind, a+": cluster_state:"+st)
			continue
		}
		currentEpochs[infoField(ci, "cluster_current_epoch")] = true
		s, err := cl.ClusterNodes(ctx).Result()
		if err != nil {
			behind = append(behind, a+": "+err.Error())
			continue
		}
		lines, err := parseNodes(s)
		if err != nil {
			return "", err
		}
		if signature(lines) != want {
			behind = append(behind, a+": configuration not yet agreed")
			continue
		}
		epochs := map[uint64]string{}
		dup := ""
		for _, ln := range lines {
			if ln.failing() || ln.has("handshake") {
				dup = fmt.Sprintf("sees %s as %s", ln.Addr, strings.Join(ln.Flags, ","))
				break
			}
			if ln.isMaster() {
				if other, ok := epochs[ln.ConfigEpoch]; ok {
					dup = fmt.Sprintf("config epoch %d shared by %s and %s", ln.ConfigEpoch, other, ln.Addr)
					break
				}
				epochs[ln.ConfigEpoch] = ln.Addr
			}
		}
		if dup != "" {
			behind = append(behind, a+": "+dup)
			continue
		}
		if me, _ := myself(lines); !me.isMaster() {
			repl, err := cl.Info(ctx, "replication").Result()
			if err != nil {
				behind = append(behind, a+": "+err.Error())
				continue
			}
			if infoField(repl, "master_link_status") != "up" {
				masterProblem := ""
				for _, n := range nodes {
					if n.id == me.MasterID {
						if cfg, err := readNodeConfig(ctx, n.cl); err == nil {
							masterProblem = configProblem(cfg)
						}
					}
				}
				behind = append(behind, a+": "+replicationStatus(repl, masterProblem))
				continue
			}
		}
		ok++
	}
	if len(behind) == 0 && len(currentEpochs) > 1 {
		return fmt.Sprintf("all nodes ready but their current epochs differ: %v", sortedKeys(currentEpochs)), nil
	}
	if len(behind) == 0 {
		return "", nil
	}
	return fmt.Sprintf("%d/%d nodes ready; %s", ok, len(addrs), strings.Join(behind, "; ")), nil
}

// wait polls cond until it returns "" (done), an error, or o.Timeout passes; it prints
// what it waits for, and the status whenever it changes and at least every 5 seconds.
func wait(ctx context.Context, o CreateOptions, what string, cond func(context.Context) (string, error)) error {
	fmt.Fprintf(o.Out, "waiting until %s (up to %s)\n", what, o.Timeout)
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var last string
	var lastPrint time.Time
	for {
		status, err := cond(wctx)
		if err != nil {
			return err
		}
		if status == "" {
			fmt.Fprintf(o.Out, "  done after %s\n", time.Since(start).Round(100*time.Millisecond))
			return nil
		}
		if status != last || time.Since(lastPrint) >= 5*time.Second {
			fmt.Fprintf(o.Out, "  %s: %s\n", time.Since(start).Round(100*time.Millisecond), status)
			last, lastPrint = status, time.Now()
		}
		if err := sleepCtx(wctx, 200*time.Millisecond); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("cluster create: interrupted while waiting until %s: %w", what, ctx.Err())
			}
			return fmt.Errorf("%w after %s waiting until %s; last status: %s", ErrTimeout, o.Timeout, what, status)
		}
	}
}

// errIsReadonly reports a READONLY reply (a write sent to a replica).
func errIsReadonly(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "READONLY")
}

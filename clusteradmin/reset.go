package clusteradmin

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// ResetOptions configures Reset.
type ResetOptions struct {
	Nodes []string  // HOST:PORT of the nodes to reset
	Yes   bool      // without it Reset only says what it would do
	Force bool      // also reset nodes holding keys (their keys are deleted)
	Out   io.Writer // progress; default io.Discard
	// Password is the nodes' requirepass; "" for none.
	Password string
}

// Reset turns nodes back into fresh, empty, unjoined cluster nodes: the recovery for a
// failed or interrupted create. It checks every node first and changes none if any is
// unreachable, not cluster-enabled, or (without Force) holds keys. A node is reset with
// CLUSTER RESET HARD (new node ID, epochs 0, forgets every other node; Redis itself
// refuses it on a master holding keys), and with Force its keys are first deleted with
// FLUSHALL.
func Reset(ctx context.Context, o ResetOptions) error {
	if o.Out == nil {
		o.Out = io.Discard
	}
	addrs, err := splitAddrs(o.Nodes)
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%w: no nodes given", ErrBadArgs)
	}
	nodes := make([]*node, len(addrs))
	for i, a := range addrs {
		nodes[i] = &node{addr: a, cl: newClient(a, o.Password)}
		defer nodes[i].cl.Close()
	}
	var problems []string
	for _, n := range nodes {
		info, err := n.cl.Info(ctx, "cluster", "replication").Result()
		if err != nil {
			problems = append(problems, fmt.Sprintf("  %s: unreachable: %v", n.addr, err))
			continue
		}
		if infoField(info, "cluster_enabled") != "1" {
			problems = append(problems, fmt.Sprintf("  %s: not cluster-enabled", n.addr))
			continue
		}
		keys, err := n.cl.DBSize(ctx).Result()
		if err != nil {
			problems = append(problems, fmt.Sprintf("  %s: DBSIZE: %v", n.addr, err))
			continue
		}
		role := infoField(info, "role")
		if keys > 0 && !o.Force {
			problems = append(problems, fmt.Sprintf("  %s: %s holding %d keys (add --force to delete them)", n.addr, role, keys))
			continue
		}
		fmt.Fprintf(o.Out, "  %s: %s, %d keys\n", n.addr, role, keys)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: refusing to reset any node:\n%s", ErrNotEmpty, strings.Join(problems, "\n"))
	}
	what := "CLUSTER RESET HARD"
	if o.Force {
		what = "FLUSHALL + CLUSTER RESET HARD"
	}
	if !o.Yes {
		fmt.Fprintf(o.Out, "would run %s on %d node(s)\n", what, len(nodes))
		return fmt.Errorf("%w: this forgets the cluster on these nodes; run again with --yes", ErrNeedYes)
	}
	for _, n := range nodes {
		if o.Force {
			// A replica refuses writes; CLUSTER RESET flushes a replica anyway.
			if err := n.cl.FlushAll(ctx).Err(); err != nil && !errIsReadonly(err) {
				return fmt.Errorf("cluster reset: FLUSHALL on %s: %w", n.addr, err)
			}
		}
		if err := n.cl.ClusterResetHard(ctx).Err(); err != nil {
			return fmt.Errorf("cluster reset: CLUSTER RESET HARD on %s: %w", n.addr, err)
		}
		ci, err := n.cl.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("cluster reset: CLUSTER INFO on %s: %w", n.addr, err)
		}
		keys, err := n.cl.DBSize(ctx).Result()
		if err != nil {
			return fmt.Errorf("cluster reset: DBSIZE on %s: %w", n.addr, err)
		}
		if k := infoField(ci, "cluster_known_nodes"); k != "1" || keys != 0 {
			return fmt.Errorf("cluster reset: %s still knows %s nodes and holds %d keys after the reset", n.addr, k, keys)
		}
		fmt.Fprintf(o.Out, "reset %s\n", n.addr)
	}
	fmt.Fprintf(o.Out, "%d node(s) reset: fresh, empty and ready for cluster create\n", len(nodes))
	return nil
}

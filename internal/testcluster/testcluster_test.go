package testcluster

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestHarnessLifecycle(t *testing.T) {
	c := New(t, Options{NodeTimeout: 2 * time.Second})
	ctx := context.Background()
	if len(c.Nodes) != 6 {
		t.Fatalf("%d nodes", len(c.Nodes))
	}
	masters, err := c.Masters(ctx)
	if err != nil || len(masters) != 3 {
		t.Fatalf("masters %v, %v", masters, err)
	}
	replicas, err := c.Replicas(ctx)
	if err != nil || len(replicas) != 3 {
		t.Fatalf("replicas %v, %v", replicas, err)
	}

	// Keys in slot 0 ("{06S}" hashes there) move with the slot, back and forth.
	const key = "{06S}k"
	for i := 0; i < 20; i++ {
		if err := c.Client(c.ownerOrFatal(t, 0)).Set(ctx, fmt.Sprint(key, i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 4; round++ {
		from := c.ownerOrFatal(t, 0)
		to := masters[(round+1)%3]
		if to == from {
			to = masters[(round+2)%3]
		}
		if err := c.MoveSlots(ctx, []int{0, 1, 2}, to); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if got := c.ownerOrFatal(t, 0); got != to {
			t.Fatalf("round %d: slot 0 on %s, want %s", round, got.Addr, to.Addr)
		}
		if n, err := c.Client(to).Do(ctx, "CLUSTER", "COUNTKEYSINSLOT", 0).Int(); err != nil || n != 20 {
			t.Fatalf("round %d: %d keys in slot 0 on the new owner, %v", round, n, err)
		}
	}

	if err := c.Failover(ctx, replicas[0]); err != nil {
		t.Fatal(err)
	}
	if role, _ := c.Client(replicas[0]).Do(ctx, "ROLE").Slice(); role[0] != "master" {
		t.Fatalf("role after failover: %v", role)
	}

	victim := masters[1]
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	if victim.Alive() {
		t.Fatal("alive after Kill")
	}
	if err := c.Restart(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
}

func (c *Cluster) ownerOrFatal(t *testing.T, slot int) *Node {
	t.Helper()
	n, err := c.OwnerOf(context.Background(), slot)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

package clusteradmin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func describe(l layout) string {
	var b strings.Builder
	for _, m := range l.masters {
		fmt.Fprintf(&b, "%s %d-%d <- %s\n", m, l.slots[m][0], l.slots[m][1], strings.Join(l.replicasOf[m], ","))
	}
	return b.String()
}

func TestPlanLayoutThreeHosts(t *testing.T) {
	addrs := []string{"10.0.0.1:7000", "10.0.0.1:7001", "10.0.0.2:7000", "10.0.0.2:7001", "10.0.0.3:7000", "10.0.0.3:7001"}
	l, err := planLayout(addrs, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The README's picture: host A's second instance replicates B, B's replicates C, C's A.
	want := `10.0.0.1:7000 0-5460 <- 10.0.0.3:7001
10.0.0.2:7000 5461-10921 <- 10.0.0.1:7001
10.0.0.3:7000 10922-16383 <- 10.0.0.2:7001
`
	if got := describe(l); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestPlanLayoutOrderAndShapes(t *testing.T) {
	// Listed host by host the other way round, two replicas each over three hosts, and a
	// layout where the greedy first choice is a dead end.
	for _, c := range []struct {
		addrs    []string
		replicas int
		want     string
	}{
		{[]string{"a:1", "b:1", "c:1", "a:2", "b:2", "c:2"}, 1,
			"a:1 0-5460 <- c:2\nb:1 5461-10921 <- a:2\nc:1 10922-16383 <- b:2\n"},
		{[]string{"a:1", "a:2", "a:3", "b:1", "b:2", "b:3", "c:1", "c:2", "c:3"}, 2,
			"a:1 0-5460 <- c:2,b:3\nb:1 5461-10921 <- a:2,c:3\nc:1 10922-16383 <- b:2,a:3\n"},
		// 4 hosts, 3 masters: d has only replicas.
		{[]string{"a:1", "b:1", "c:1", "d:1", "d:2", "a:2"}, 1,
			"a:1 0-5460 <- d:1\nb:1 5461-10921 <- a:2\nc:1 10922-16383 <- d:2\n"},
	} {
		l, err := planLayout(c.addrs, c.replicas)
		if err != nil {
			t.Fatalf("%v: %v", c.addrs, err)
		}
		if got := describe(l); got != c.want {
			t.Fatalf("%v:\ngot\n%s\nwant\n%s", c.addrs, got, c.want)
		}
	}
}

func TestPlanLayoutRefuses(t *testing.T) {
	for _, c := range []struct {
		addrs    []string
		replicas int
		want     error
	}{
		{[]string{"a:1", "a:2", "a:3", "a:4", "a:5", "a:6"}, 1, ErrNoLayout},
		{[]string{"a:1", "a:2", "a:3", "a:4", "b:1", "c:1"}, 1, ErrNoLayout},
		{[]string{"a:1", "b:1", "c:1", "a:2", "b:2"}, 1, ErrBadArgs},
		{[]string{"a:1", "b:1", "a:2", "b:2"}, 1, ErrBadArgs},
		{[]string{"a:1", "b:1", "c:1"}, -1, ErrBadArgs},
	} {
		if _, err := planLayout(c.addrs, c.replicas); !errors.Is(err, c.want) {
			t.Errorf("%v r=%d: err %v, want %v", c.addrs, c.replicas, err, c.want)
		}
	}
	// Without replicas any spread of masters works.
	if _, err := planLayout([]string{"a:1", "a:2", "a:3"}, 0); err != nil {
		t.Fatal(err)
	}
}

func TestParseNodes(t *testing.T) {
	// Recorded from redis-server 7.0 during a slot move, plus a failed node and a node
	// that does not know its address yet.
	const s = `07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,hostname4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922 [5461->-e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca]
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 0 1426238318243 3 disconnected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 5462 [5461-<-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
6ec23923021cf3ffec47632106199cb7f496ce01 :0@0 master,noaddr - 1426238316232 1426238315228 0 disconnected
`
	ns, err := parseNodes(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 5 {
		t.Fatalf("%d nodes", len(ns))
	}
	if ns[0].Addr != "127.0.0.1:30004" || ns[0].Host != "127.0.0.1" || ns[0].MasterID != "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca" || ns[0].isMaster() {
		t.Fatalf("replica: %+v", ns[0])
	}
	if ns[1].Migrating[5461] != "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca" || ns[1].slotCount() != 5462 {
		t.Fatalf("migrating: %+v", ns[1])
	}
	if !ns[2].failing() || ns[2].ConfigEpoch != 3 {
		t.Fatalf("failed: %+v", ns[2])
	}
	me, ok := myself(ns)
	if !ok || me.ID[:4] != "e7d1" || me.Importing[5461] == "" || me.slotCount() != 5462 {
		t.Fatalf("myself: %+v", me)
	}
	if ns[4].Addr != "" || ns[4].Host != "" {
		t.Fatalf("noaddr: %+v", ns[4])
	}
	for _, bad := range []string{"x y z", "a 1.2.3.4:1@2 master - 0 0 x connected", "a 1.2.3.4:1@2 master - 0 0 1 connected 5-3", "a 1.2.3.4:1@2 master - 0 0 1 connected 16384"} {
		if _, err := parseNodes(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestWaitIsBoundedAndReports(t *testing.T) {
	var out strings.Builder
	o := CreateOptions{Timeout: 700 * time.Millisecond, Out: &out}
	calls := 0
	start := time.Now()
	err := wait(context.Background(), o, "the impossible", func(context.Context) (string, error) {
		calls++
		return fmt.Sprintf("still %d", calls%2), nil
	})
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "waiting until the impossible; last status: still") {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("wait took %s", d)
	}
	if !strings.Contains(out.String(), "waiting until the impossible (up to 700ms)") || strings.Count(out.String(), ": still ") < 2 {
		t.Fatalf("progress:\n%s", out.String())
	}

	// Cancelled from outside: says so instead of claiming a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = wait(ctx, CreateOptions{Timeout: time.Minute, Out: &out}, "x", func(context.Context) (string, error) { return "no", nil })
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Fatalf("cancelled: %v", err)
	}
}

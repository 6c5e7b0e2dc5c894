package clusteradmin

import (
	"strings"
	"testing"
)

// checked builds the nodes Check would see from one CLUSTER NODES text, as if every node
// answered with that view (recorded format of redis-server 7.0).
func checked(t *testing.T, s string) ([]*checkedNode, map[string]*checkedNode) {
	t.Helper()
	view, err := parseNodes(s)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*checkedNode
	byID := map[string]*checkedNode{}
	for _, ln := range view {
		n := &checkedNode{nodeLine: ln, reachable: ln.Addr != "", state: "ok", view: view}
		nodes = append(nodes, n)
		byID[ln.ID] = n
	}
	return nodes, byID
}

func TestProblemsEpochsAndDoubleClaims(t *testing.T) {
	nodes, byID := checked(t, `aaaa 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
bbbb 10.0.0.2:7000@17000 master - 0 0 1 connected 5461-10922
cccc 10.0.0.3:7000@17000 master - 0 0 3 connected 10922-16383
dddd 10.0.0.1:7001@17001 slave cccc 0 0 3 connected
eeee 10.0.0.2:7001@17001 slave aaaa 0 0 1 connected
ffff 10.0.0.3:7001@17001 slave bbbb 0 0 1 connected
`)
	ps := problems("10.0.0.1:7000", nodes, byID)
	var got []string
	for _, p := range ps {
		got = append(got, p.What+" => "+p.Fix)
	}
	want := []string{
		"slot 10922 is claimed by several masters: 10.0.0.2:7000, 10.0.0.3:7000 => redis-cli --cluster fix 10.0.0.1:7000",
		"config epoch 1 is shared by 10.0.0.1:7000, 10.0.0.2:7000 => redis-cli -h 10.0.0.2 -p 7000 CLUSTER BUMPEPOCH",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestProblemsSpareReplicaAndNoAddr(t *testing.T) {
	// cccc has two replicas on other hosts, aaaa none: one of cccc's can move.
	nodes, byID := checked(t, `aaaa 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
bbbb 10.0.0.2:7000@17000 master - 0 0 2 connected 5461-10921
cccc 10.0.0.3:7000@17000 master - 0 0 3 connected 10922-16383
dddd 10.0.0.1:7001@17001 slave cccc 0 0 3 connected
eeee 10.0.0.2:7001@17001 slave cccc 0 0 3 connected
ffff 10.0.0.3:7001@17001 slave bbbb 0 0 2 connected
9999 :0@0 master,noaddr - 0 0 0 disconnected
`)
	ps := problems("10.0.0.1:7000", nodes, byID)
	var got []string
	for _, p := range ps {
		got = append(got, p.What+" => "+p.Fix)
	}
	want := []string{
		"node 9999 has no address (flags master,noaddr) => redis-cli --cluster call 10.0.0.1:7000 CLUSTER FORGET 9999",
		"master 10.0.0.1:7000 (aaaa) has no replica on another host => redis-cli -h 10.0.0.2 -p 7001 CLUSTER REPLICATE aaaa",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestProblemsEveryKind pins every kind of problem, its fix and the order Check prints
// them in: per node, no address, no answer, seen as failing, not reporting ok; then
// uncovered slots, an open slot on both ends, a shared config
// epoch, masters without a replica on another host, replicas on their master's host;
// and the replicas each fix moves (a spare replica, an empty master, an orphan, the
// master with the fewest replicas elsewhere).
func TestProblemsEveryKind(t *testing.T) {
	for _, tc := range []struct {
		name, nodes string
		adjust      func(byID map[string]*checkedNode)
		want        []string
	}{{
		name: "every kind",
		nodes: `aaaa 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5000 [5001->-bbbb]
bbbb 10.0.0.2:7000@17000 master - 0 0 2 connected 5001-10000 [5001-<-aaaa]
cccc 10.0.0.3:7000@17000 master,fail? - 0 0 2 connected 10001-16000
dddd 10.0.0.1:7001@17001 slave aaaa 0 0 1 connected
eeee 10.0.0.3:7001@17001 slave bbbb 0 0 2 connected
ffff 10.0.0.3:7002@17002 slave cccc 0 0 2 connected
gggg 10.0.0.2:7002@17002 master - 0 0 0 connected
9999 :0@0 master,noaddr - 0 0 0 disconnected
`,
		adjust: func(byID map[string]*checkedNode) {
			// As Check leaves them: no view of their own from nodes that did not answer.
			byID["eeee"].reachable, byID["eeee"].view = false, nil
			byID["9999"].view = nil
			byID["gggg"].state = "fail"
		},
		want: []string{
			"10.0.0.3:7000 is seen as failing by 10.0.0.1:7000 (pfail), 10.0.0.2:7000 (pfail), 10.0.0.3:7000 (pfail), 10.0.0.1:7001 (pfail), 10.0.0.3:7002 (pfail), 10.0.0.2:7002 (pfail) => start it again or repair its network; if it is gone for good: redis-cli --cluster call 10.0.0.1:7000 CLUSTER FORGET cccc",
			"10.0.0.3:7001 (eeee) does not answer => start it again on 10.0.0.3 (service redis start 7001, or service valkey start 7001); if it is gone for good: redis-cli --cluster call 10.0.0.1:7000 CLUSTER FORGET eeee",
			"10.0.0.2:7002 reports cluster_state:fail => fix the other problems; it turns ok once every slot is served",
			"node 9999 has no address (flags master,noaddr) => redis-cli --cluster call 10.0.0.1:7000 CLUSTER FORGET 9999",
			"slots 16001-16383 are not served by any master => redis-cli --cluster fix 10.0.0.1:7000",
			"slot 5001 is open on 10.0.0.1:7000: MIGRATING to 10.0.0.2:7000 => finish the move: redis-cli --cluster fix 10.0.0.1:7000, or undo it: redis-cli -h 10.0.0.1 -p 7000 CLUSTER SETSLOT 5001 STABLE",
			"slot 5001 is open on 10.0.0.2:7000: IMPORTING from 10.0.0.1:7000 => finish the move: redis-cli --cluster fix 10.0.0.1:7000, or undo it: redis-cli -h 10.0.0.2 -p 7000 CLUSTER SETSLOT 5001 STABLE",
			"config epoch 2 is shared by 10.0.0.2:7000, 10.0.0.3:7000 => redis-cli -h 10.0.0.3 -p 7000 CLUSTER BUMPEPOCH",
			"master 10.0.0.1:7000 (aaaa) has no replica on another host => redis-cli -h 10.0.0.3 -p 7002 CLUSTER REPLICATE aaaa",
			"master 10.0.0.2:7000 (bbbb) has no replica on another host => redis-cli -h 10.0.0.1 -p 7001 CLUSTER REPLICATE bbbb",
			"master 10.0.0.3:7000 (cccc) has no replica on another host => redis-cli -h 10.0.0.1 -p 7001 CLUSTER REPLICATE cccc",
			"replica 10.0.0.1:7001 is on the same host as its master 10.0.0.1:7000 => redis-cli -h 10.0.0.1 -p 7001 CLUSTER REPLICATE bbbb",
			"replica 10.0.0.3:7002 is on the same host as its master 10.0.0.3:7000 => redis-cli -h 10.0.0.3 -p 7002 CLUSTER REPLICATE aaaa",
		},
	}, {
		name: "a failed node; an empty master replicates an orphan",
		nodes: `aaaa 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-8191
bbbb 10.0.0.2:7000@17000 master - 0 0 2 connected 8192-16383
cccc 10.0.0.1:7001@17001 slave bbbb 0 0 2 connected
gggg 10.0.0.3:7000@17000 master - 0 0 0 connected
kkkk 10.0.0.4:7000@17000 master,fail - 0 0 0 connected
`,
		adjust: func(byID map[string]*checkedNode) {
			byID["kkkk"].reachable, byID["kkkk"].view = false, nil
		},
		want: []string{
			"10.0.0.4:7000 (kkkk) does not answer => start it again on 10.0.0.4 (service redis start 7000, or service valkey start 7000); if it is gone for good: redis-cli --cluster call 10.0.0.1:7000 CLUSTER FORGET kkkk",
			"10.0.0.4:7000 is seen as failing by 10.0.0.1:7000 (fail), 10.0.0.2:7000 (fail), 10.0.0.1:7001 (fail), 10.0.0.3:7000 (fail) => start it again or repair its network; if it is gone for good: redis-cli --cluster call 10.0.0.1:7000 CLUSTER FORGET kkkk",
			"master 10.0.0.1:7000 (aaaa) has no replica on another host => redis-cli -h 10.0.0.3 -p 7000 CLUSTER REPLICATE aaaa",
		},
	}, {
		name: "no orphan: the master with the fewest replicas elsewhere",
		nodes: `aaaa 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5000
bbbb 10.0.0.2:7000@17000 master - 0 0 2 connected 5001-10000
hhhh 10.0.0.3:7000@17000 master - 0 0 3 connected 10001-16383
cccc 10.0.0.2:7001@17001 slave aaaa 0 0 1 connected
dddd 10.0.0.3:7001@17001 slave aaaa 0 0 1 connected
eeee 10.0.0.1:7001@17001 slave bbbb 0 0 2 connected
ffff 10.0.0.2:7002@17002 slave bbbb 0 0 2 connected
iiii 10.0.0.1:7002@17002 slave hhhh 0 0 3 connected
`,
		want: []string{
			"replica 10.0.0.2:7002 is on the same host as its master 10.0.0.2:7000 => redis-cli -h 10.0.0.2 -p 7002 CLUSTER REPLICATE hhhh",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			nodes, byID := checked(t, tc.nodes)
			if tc.adjust != nil {
				tc.adjust(byID)
			}
			var got []string
			for _, p := range problems("10.0.0.1:7000", nodes, byID) {
				got = append(got, p.What+" => "+p.Fix)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

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

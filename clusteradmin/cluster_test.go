package clusteradmin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
	"github.com/redis-carp-proxy/redis-carp-proxy/redissetup"
)

// hosts are the three appliance hosts, simulated by loopback addresses.
var hosts = []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}

// freePair returns two ports free on every host, with their cluster bus ports.
func freePair(t *testing.T) (int, int) {
	t.Helper()
	free := func(p int) bool {
		for _, h := range hosts {
			for _, q := range []int{p, p + 10000} {
				ln, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(q)))
				if err != nil {
					return false
				}
				ln.Close()
			}
		}
		return true
	}
	for tries := 0; tries < 500; tries++ {
		p := 20000 + rand.IntN(29000)
		if free(p) && free(p+1) {
			return p, p + 1
		}
	}
	t.Fatal("no free port pair on the three loopback hosts")
	return 0, 0
}

func checkOK(t *testing.T, ctx context.Context, seed string) string {
	t.Helper()
	var out bytes.Buffer
	ps, err := Check(ctx, CheckOptions{Seed: seed, Out: &out})
	if err != nil || len(ps) != 0 {
		t.Fatalf("check: %v %v\n%s", err, ps, out.String())
	}
	return out.String()
}

// checkUntil runs Check until a problem containing want appears (the nodes learn some
// changes through gossip), for at most 20s; it returns the problems and the output.
func checkUntil(t *testing.T, ctx context.Context, seed, want string) ([]Problem, string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var out bytes.Buffer
		ps, err := Check(ctx, CheckOptions{Seed: seed, Out: &out})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if strings.Contains(p.What, want) {
				return ps, out.String()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("check never reported %q:\n%s", want, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// layoutOf reads the cluster as every node sees itself: node address → master address
// ("" for a master).
func layoutOf(t *testing.T, ctx context.Context, c *testcluster.Cluster) map[string]string {
	t.Helper()
	ids := map[string]string{}
	masterOf := map[string]string{}
	for _, n := range c.Nodes {
		s, err := c.Client(n).ClusterNodes(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		lines, err := parseNodes(s)
		if err != nil {
			t.Fatal(err)
		}
		me, _ := myself(lines)
		ids[me.ID] = n.Addr
		masterOf[n.Addr] = me.MasterID
	}
	for a, m := range masterOf {
		masterOf[a] = ids[m]
	}
	return masterOf
}

// TestInitStartCreateCheck sets up six instances with redis init on three loopback
// hosts, creates the cluster, and breaks it in turn (an open slot, an uncovered slot, a
// replica on its master's host, a dead replica): Check reports each with its fix, and
// reports nothing once it is repaired.
func TestInitStartCreateCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	l := initAndCreate(t, ctx)
	l.checkLayout()
	t.Logf("check:\n%s", checkOK(t, ctx, l.seed))
	l.checkServes()
	l.checkOpenSlot()
	l.checkUncoveredSlot()
	l.checkReplicaOnMastersHost()
	l.checkDeadReplica()
}

// createdCluster is a cluster made by Create from redis init's files, one master and one
// replica per host, read back from the nodes (lay: node address → master address, ""
// for a master).
type createdCluster struct {
	t       *testing.T
	ctx     context.Context
	c       *testcluster.Cluster
	addrs   []string
	seed    string
	lay     map[string]string
	masters []string
}

// initAndCreate writes two instances per host with redis init, starts them from those
// files, and creates the cluster, checking Create's progress output.
func initAndCreate(t *testing.T, ctx context.Context) *createdCluster {
	p1, p2 := freePair(t)
	var specs []testcluster.NodeSpec
	var addrs []string
	for _, h := range hosts {
		root := t.TempDir()
		var out bytes.Buffer
		// Without a password: the test drives the nodes directly (TestCreateWithClusterPassword
		// covers the password).
		err := redissetup.Init(ctx, redissetup.Options{Ports: []int{p1, p2}, Bind: h, Root: root,
			NodeTimeout: 2 * time.Second, Out: &out, NoAuth: true})
		if err != nil {
			t.Fatalf("redis init on %s: %v\n%s", h, err, out.String())
		}
		for _, p := range []int{p1, p2} {
			specs = append(specs, testcluster.NodeSpec{Host: h, Port: p,
				Config: filepath.Join(root, "usr/local/etc", fmt.Sprintf("redis-%d.conf", p))})
			addrs = append(addrs, net.JoinHostPort(h, strconv.Itoa(p)))
		}
	}
	c := testcluster.NewNodes(t, testcluster.Options{}, specs)

	out := &testutil.SyncBuffer{}
	start := time.Now()
	if err := Create(ctx, CreateOptions{Nodes: addrs, Out: out}); err != nil {
		t.Fatalf("create: %v\n%s", err, out.String())
	}
	t.Logf("create took %s:\n%s", time.Since(start).Round(time.Millisecond), out.String())
	for _, want := range []string{"waiting until every node knows every other node", "done after", "cluster ok: 3 masters, 3 replicas"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("progress output lacks %q", want)
		}
	}
	l := &createdCluster{t: t, ctx: ctx, c: c, addrs: addrs, seed: addrs[0], lay: layoutOf(t, ctx, c)}
	for a, m := range l.lay {
		if m == "" {
			l.masters = append(l.masters, a)
		}
	}
	return l
}

// client is the client of the node at addr.
func (l *createdCluster) client(addr string) *redis.Client {
	for _, n := range l.c.Nodes {
		if n.Addr == addr {
			return l.c.Client(n)
		}
	}
	l.t.Fatalf("no node %s", addr)
	return nil
}

// id is the node ID of the node at addr.
func (l *createdCluster) id(addr string) string {
	s, err := l.client(addr).Do(l.ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		l.t.Fatal(err)
	}
	return s
}

// do runs a command on the node at addr; an error fails the test.
func (l *createdCluster) do(addr string, args ...any) {
	if err := l.client(addr).Do(l.ctx, args...).Err(); err != nil {
		l.t.Fatal(err)
	}
}

// checkLayout: one master per host, every replica on another host than its master.
func (l *createdCluster) checkLayout() {
	mastersPerHost := map[string]int{}
	for a, m := range l.lay {
		if m == "" {
			mastersPerHost[hostOf(a)]++
			continue
		}
		if hostOf(a) == hostOf(m) {
			l.t.Errorf("replica %s on the host of its master %s", a, m)
		}
	}
	for _, h := range hosts {
		if mastersPerHost[h] != 1 {
			l.t.Errorf("host %s has %d masters: %v", h, mastersPerHost[h], l.lay)
		}
	}
}

// checkServes: the cluster serves, and Create refuses its nodes now that they are in a
// cluster.
func (l *createdCluster) checkServes() {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: l.addrs, DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second})
	defer cc.Close()
	for i := 0; i < 50; i++ {
		if err := cc.Set(l.ctx, fmt.Sprint("k", i), i, 0).Err(); err != nil {
			l.t.Fatal(err)
		}
	}
	err := Create(l.ctx, CreateOptions{Nodes: l.addrs})
	if !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), "already in a cluster (knows 6 nodes)") {
		l.t.Fatalf("create on a running cluster: %v", err)
	}
}

// slotOfX is the slot of key "x" and the master that serves it.
func (l *createdCluster) slotOfX() (slot int, owner string) {
	slot, err := l.client(l.masters[1]).Do(l.ctx, "CLUSTER", "KEYSLOT", "x").Int()
	if err != nil {
		l.t.Fatal(err)
	}
	for _, m := range l.masters {
		s, err := l.client(m).ClusterNodes(l.ctx).Result()
		if err != nil {
			l.t.Fatal(err)
		}
		lines, _ := parseNodes(s)
		me, _ := myself(lines)
		for _, r := range me.Slots {
			if slot >= r[0] && slot <= r[1] {
				owner = m
			}
		}
	}
	if owner == "" {
		l.t.Fatalf("no master claims slot %d", slot)
	}
	return slot, owner
}

// checkOpenSlot: a master importing a slot it does not own is reported with SETSLOT
// STABLE as the fix, and that fix clears it.
func (l *createdCluster) checkOpenSlot() {
	slot, owner := l.slotOfX()
	importer := l.masters[0]
	if owner == importer {
		importer = l.masters[1]
	}
	l.do(importer, "CLUSTER", "SETSLOT", slot, "IMPORTING", l.id(owner))
	ps, text := checkUntil(l.t, l.ctx, l.seed, fmt.Sprintf("slot %d is open on %s: IMPORTING from %s", slot, importer, owner))
	if len(ps) != 1 || !strings.Contains(ps[0].Fix, fmt.Sprintf("CLUSTER SETSLOT %d STABLE", slot)) {
		l.t.Fatalf("open slot: %v\n%s", ps, text)
	}
	l.do(importer, "CLUSTER", "SETSLOT", slot, "STABLE")
	checkOK(l.t, l.ctx, l.seed)
}

// checkUncoveredSlot: a slot its master stops claiming is reported with
// redis-cli --cluster fix as the fix.
func (l *createdCluster) checkUncoveredSlot() {
	slot, owner := l.slotOfX()
	l.do(owner, "CLUSTER", "DELSLOTS", slot)
	ps, text := checkUntil(l.t, l.ctx, l.seed, fmt.Sprintf("slot %d is not served by any master", slot))
	if p := ps[len(ps)-1]; !strings.Contains(p.What, "not served") || p.Fix != "redis-cli --cluster fix "+l.seed {
		l.t.Fatalf("uncovered slot: %v\n%s", ps, text)
	}
	l.do(owner, "CLUSTER", "ADDSLOTS", slot)
	checkOK(l.t, l.ctx, l.seed)
}

// checkReplicaOnMastersHost: a replica moved onto its new master's host is reported,
// and so is its old master, left without a replica on another host; the fix suggested
// for the old master (replicate it again) repairs both.
func (l *createdCluster) checkReplicaOnMastersHost() {
	var moved, oldMaster, newMaster string
	for a, m := range l.lay {
		if m != "" {
			moved, oldMaster = a, m
			break
		}
	}
	for _, m := range l.masters {
		if hostOf(m) == hostOf(moved) {
			newMaster = m
		}
	}
	l.do(moved, "CLUSTER", "REPLICATE", l.id(newMaster))
	ps, text := checkUntil(l.t, l.ctx, l.seed, fmt.Sprintf("replica %s is on the same host as its master %s", moved, newMaster))
	l.t.Logf("replica on its master's host:\n%s", text)
	var orphan *Problem
	for i, p := range ps {
		if strings.Contains(p.What, fmt.Sprintf("master %s (", oldMaster)) && strings.Contains(p.What, "has no replica on another host") {
			orphan = &ps[i]
		}
	}
	wantFix := fmt.Sprintf("redis-cli -h %s -p %s CLUSTER REPLICATE %s", hostOf(moved), portOf(moved), l.id(oldMaster))
	if orphan == nil || orphan.Fix != wantFix {
		l.t.Fatalf("missing replica not reported with fix %q: %v\n%s", wantFix, ps, text)
	}
	l.do(moved, "CLUSTER", "REPLICATE", l.id(oldMaster))
	checkOK(l.t, l.ctx, l.seed)
}

// checkDeadReplica: a replica whose process dies is reported as not answering (and its
// master as without a replica), then, after cluster-node-timeout, as failing.
func (l *createdCluster) checkDeadReplica() {
	if err := l.c.Kill(l.c.Nodes[1]); err != nil {
		l.t.Fatal(err)
	}
	dead := l.c.Nodes[1].Addr
	ps, text := checkUntil(l.t, l.ctx, l.seed, "has no replica on another host")
	l.t.Logf("dead replica:\n%s", text)
	found := false
	for _, p := range ps {
		if strings.Contains(p.What, dead+" (") && strings.Contains(p.What, "does not answer") {
			found = true
		}
	}
	if !found || !strings.Contains(text, "unreachable") {
		l.t.Fatalf("dead replica %s not reported: %v\n%s", dead, ps, text)
	}
	// After cluster-node-timeout the others flag it pfail, then fail.
	_, text = checkUntil(l.t, l.ctx, l.seed, dead+" is seen as failing by")
	l.t.Logf("failing replica:\n%s", text)
}

func TestCreateInterruptedResetRecreate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	var specs []testcluster.NodeSpec
	for i := 0; i < 6; i++ {
		specs = append(specs, testcluster.NodeSpec{Host: hosts[i%3]})
	}
	c := testcluster.NewNodes(t, testcluster.Options{NodeTimeout: 2 * time.Second}, specs)
	addrs := c.Seeds()

	// Interrupted right after the nodes were told to meet.
	cctx, stop := context.WithCancel(ctx)
	out := &testutil.SyncBuffer{}
	err := Create(cctx, CreateOptions{Nodes: addrs, Out: out, afterStep: func(step string) {
		if step == "meet" {
			stop()
		}
	}})
	stop()
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "cluster reset "+strings.Join(addrs, " ")+" --yes") {
		t.Fatalf("interrupted create: %v\n%s", err, out.String())
	}

	// The half-made nodes are refused, with the reason, and not touched.
	err = Create(ctx, CreateOptions{Nodes: addrs})
	if !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), "already") {
		t.Fatalf("create on half-made nodes: %v", err)
	}
	t.Logf("refused: %v", err)

	// A key on one master: reset refuses every node without --force.
	// (The half-made cluster may still report CLUSTERDOWN for a moment.)
	var master *testcluster.Node
	for deadline := time.Now().Add(15 * time.Second); master == nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, n := range c.Nodes {
			if err := c.Client(n).Set(ctx, "{a}k", "v", 0).Err(); err == nil {
				master = n
				break
			}
		}
	}
	if master == nil {
		t.Fatal("no node accepted a key for the slot of {a}")
	}
	err = Reset(ctx, ResetOptions{Nodes: addrs, Yes: true})
	if !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), master.Addr+": master holding 1 keys") {
		t.Fatalf("reset with a key: %v", err)
	}
	if n, _ := c.Client(master).DBSize(ctx).Result(); n != 1 {
		t.Fatalf("refused reset changed the node: %d keys", n)
	}
	// Without --yes it only says what it would do.
	var rout bytes.Buffer
	if err := Reset(ctx, ResetOptions{Nodes: addrs, Force: true, Out: &rout}); !errors.Is(err, ErrNeedYes) {
		t.Fatalf("reset without --yes: %v", err)
	}
	if n, _ := c.Client(master).DBSize(ctx).Result(); n != 1 {
		t.Fatalf("reset without --yes changed the node: %d keys", n)
	}
	rout.Reset()
	if err := Reset(ctx, ResetOptions{Nodes: addrs, Force: true, Yes: true, Out: &rout}); err != nil {
		t.Fatalf("reset: %v\n%s", err, rout.String())
	}
	t.Logf("reset:\n%s", rout.String())

	out = &testutil.SyncBuffer{}
	if err := Create(ctx, CreateOptions{Nodes: addrs, Out: out}); err != nil {
		t.Fatalf("create after reset: %v\n%s", err, out.String())
	}
	checkOK(t, ctx, addrs[0])
}

func TestCreateBadArgs(t *testing.T) {
	ctx := context.Background()
	for _, nodes := range [][]string{
		{"127.0.0.1:1", "127.0.0.1:1", "127.0.0.2:1"},
		{"127.0.0.1"},
		{":7000", "127.0.0.1:2", "127.0.0.1:3"},
		{"127.0.0.1:70000", "127.0.0.1:2", "127.0.0.1:3"},
	} {
		if err := Create(ctx, CreateOptions{Nodes: nodes}); !errors.Is(err, ErrBadArgs) {
			t.Errorf("%v: %v", nodes, err)
		}
	}
	if err := Reset(ctx, ResetOptions{}); !errors.Is(err, ErrBadArgs) {
		t.Errorf("reset without nodes: %v", err)
	}
	if _, err := Check(ctx, CheckOptions{Seed: "nohost"}); !errors.Is(err, ErrBadArgs) {
		t.Errorf("check bad seed: %v", err)
	}
}

// TestCreateWithClusterPassword (issue 28, finding 12): redis init gives every instance
// the cluster password (one file, copied to the other hosts); the nodes refuse clients
// without it, and create and check work with it.
func TestCreateWithClusterPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	p1, p2 := freePair(t)
	var specs []testcluster.NodeSpec
	var addrs []string
	var pass string
	for i, h := range hosts {
		root := t.TempDir()
		passFile := filepath.Join(root, redissetup.DefaultPassFile)
		if i > 0 { // copied from the first host
			os.MkdirAll(filepath.Dir(passFile), 0o755)
			if err := os.WriteFile(passFile, []byte(pass+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		var out bytes.Buffer
		if err := redissetup.Init(ctx, redissetup.Options{Ports: []int{p1, p2}, Bind: h, Root: root,
			NodeTimeout: 2 * time.Second, Out: &out}); err != nil {
			t.Fatalf("redis init on %s: %v\n%s", h, err, out.String())
		}
		if i == 0 {
			var err error
			if pass, err = redissetup.ReadPassFile(passFile); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range []int{p1, p2} {
			specs = append(specs, testcluster.NodeSpec{Host: h, Port: p,
				Config: filepath.Join(root, "usr/local/etc", fmt.Sprintf("redis-%d.conf", p))})
			addrs = append(addrs, net.JoinHostPort(h, strconv.Itoa(p)))
		}
	}
	testcluster.NewNodes(t, testcluster.Options{}, specs)

	anon := redis.NewClient(&redis.Options{Addr: addrs[0], DialTimeout: 2 * time.Second, Protocol: 2, DisableIdentity: true})
	defer anon.Close()
	if err := anon.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("a node answered a client without the password: %v", err)
	}
	if err := Create(ctx, CreateOptions{Nodes: addrs}); err == nil {
		t.Fatal("create without the password succeeded")
	}
	out := &testutil.SyncBuffer{}
	if err := Create(ctx, CreateOptions{Nodes: addrs, Out: out, Password: pass}); err != nil {
		t.Fatalf("create: %v\n%s", err, out.String())
	}
	var cout bytes.Buffer
	if ps, err := Check(ctx, CheckOptions{Seed: addrs[0], Out: &cout, Password: pass}); err != nil || len(ps) != 0 {
		t.Fatalf("check: %v %v\n%s", err, ps, cout.String())
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Password: pass, DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second})
	defer cc.Close()
	for i := 0; i < 20; i++ {
		if err := cc.Set(ctx, fmt.Sprint("pw", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

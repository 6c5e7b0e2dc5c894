package proxy

import (
	"strings"
	"testing"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

func TestParseMyself(t *testing.T) {
	// Recorded from redis-server 7.0 during a slot move.
	text := "07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@40004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected\n" +
		"e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 5465 [5461->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f] [93-<-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]\n"
	ns, ok := parseMyself(text)
	if !ok {
		t.Fatal("not parsed")
	}
	for s, want := range map[int]bool{0: true, 5460: true, 5461: false, 5465: true, 5466: false, 93: true} {
		if ns.owns[s] != want {
			t.Errorf("owns[%d] = %v", s, ns.owns[s])
		}
	}
	if !ns.moving[5461] || !ns.moving[93] || ns.moving[0] {
		t.Error("migrating/importing slots not marked")
	}
	other, _ := parseMyself(strings.Replace(text, " 5465 ", " ", 1))
	if other.hash == ns.hash {
		t.Error("hash ignores a lost slot")
	}
	if _, ok := parseMyself("garbage"); ok {
		t.Error("garbage parsed")
	}
}

func TestWithOwnerDropsEmptyMaster(t *testing.T) {
	a, b, c := &node{addr: "a"}, &node{addr: "b"}, &node{addr: "c"}
	m := &slotMap{masters: []*node{a, b}, replicas: [][]*node{{c}, nil}}
	for s := range m.owner {
		m.owner[s] = uint16(s % 2)
	}
	m.owner[1] = 0 // a serves all even slots and slot 1
	for s := 0; s < command.NumSlots; s += 2 {
		m = m.withOwner(s, c)
	}
	m = m.withOwner(1, c)
	if len(m.masters) != 2 || m.masters[0] != b || m.masters[1] != c {
		t.Fatalf("masters = %v", m.masters)
	}
	for s := 0; s < command.NumSlots; s++ {
		want := c
		if s%2 == 1 && s != 1 {
			want = b
		}
		if m.master(s) != want {
			t.Fatalf("slot %d on %s", s, m.master(s).addr)
		}
	}
}

func TestFailingMasters(t *testing.T) {
	text := "a1 127.0.0.1:7000@17000 master,fail - 0 0 1 disconnected 0-5460\n" +
		"a2 127.0.0.1:7001@17001 master,fail? - 0 0 2 connected 5461-10922\n" +
		"a3 127.0.0.1:7002@17002 myself,master - 0 0 3 connected 10923-16383\n" +
		"a4 127.0.0.1:7003@17003 master,fail - 0 0 4 disconnected\n" + // failed over: no slots
		"a5 127.0.0.1:7004@17004,host slave,fail a3 0 0 3 disconnected\n"
	got := failingMasters(text)
	if len(got) != 2 || !got["127.0.0.1:7000"] || !got["127.0.0.1:7001"] {
		t.Fatalf("failingMasters = %v, want the two failing nodes that serve slots", got)
	}
	if failingMasters("a3 127.0.0.1:7002@17002 myself,master - 0 0 3 connected 0-16383\n") != nil {
		t.Fatal("a healthy cluster has failing masters")
	}
}

// TestResolveAddr: a redirection without a host ("MOVED 3999 :6381", Redis 7) resolves
// against the node that sent it.
func TestResolveAddr(t *testing.T) {
	if got := resolveAddr("?:6381", "10.0.0.1:7000"); got != "10.0.0.1:6381" {
		t.Errorf("resolveAddr = %q", got)
	}
}

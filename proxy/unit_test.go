package proxy

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestKeySlotKnownValues(t *testing.T) {
	for key, want := range map[string]int{
		"":                     0,
		"foo":                  12182,
		"bar":                  5061,
		"123456789":            0x31C3 & (NumSlots - 1),
		"{user1000}.following": KeySlot([]byte("user1000")),
		"{}":                   KeySlot([]byte("{}")),
		"{}foo":                int(crc16([]byte("{}foo")) & (NumSlots - 1)),
		"{a}{b}":               KeySlot([]byte("a")),
		"}{a}":                 KeySlot([]byte("a")),
		"foo{":                 int(crc16([]byte("foo{")) & (NumSlots - 1)),
		"{{a}}":                KeySlot([]byte("{a")),
		"x{}{a}":               int(crc16([]byte("x{}{a}")) & (NumSlots - 1)),
	} {
		if got := KeySlot([]byte(key)); got != want {
			t.Errorf("KeySlot(%q) = %d, want %d", key, got, want)
		}
	}
}

// TestCRC16MatchesBitwise: the table-driven CRC (four bytes per step) equals the CRC16
// (XMODEM) computed bit by bit, for every length around the step and any content.
func TestCRC16MatchesBitwise(t *testing.T) {
	bitwise := func(b []byte) uint16 {
		var crc uint16
		for _, c := range b {
			crc ^= uint16(c) << 8
			for i := 0; i < 8; i++ {
				if crc&0x8000 != 0 {
					crc = crc<<1 ^ 0x1021
				} else {
					crc <<= 1
				}
			}
		}
		return crc
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 70; n++ {
		for k := 0; k < 50; k++ {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(rnd.UintN(256))
			}
			if got, want := crc16(b), bitwise(b); got != want {
				t.Fatalf("crc16(%x) = %#04x, want %#04x", b, got, want)
			}
		}
	}
}

func TestKeyIndexes(t *testing.T) {
	tab := newBuiltinTable()
	for _, tc := range []struct {
		cmd  string
		want []int
		ok   bool
	}{
		{"GET k", []int{1}, true},
		{"MSET a 1 b 2", []int{1, 3}, true},
		{"BLPOP a b 0", []int{1, 2}, true},
		{"EVAL s 2 k1 k2 a", []int{3, 4}, true},
		{"EVAL s 0", nil, true},
		{"EVAL s 5 k", nil, false},
		{"XREAD COUNT 1 STREAMS s1 s2 0 0", []int{4, 5}, true},
		{"XREAD STREAMS s1", nil, false},
		{"ZUNIONSTORE d 2 a b", []int{1, 3, 4}, true},
		{"SORT k BY x STORE d", []int{1, 5}, true},
		{"BITOP AND d a b", []int{2, 3, 4}, true},
		{"PING", nil, true},
		{"SINTERCARD 2 a b LIMIT 1", []int{2, 3}, true},
		{"ZUNION 2 a b WITHSCORES", []int{2, 3}, true},
		{"LMPOP 2 a b LEFT", []int{2, 3}, true},
		{"ZMPOP 1 a MIN", []int{2}, true},
		{"BLMPOP 0 2 a b LEFT", []int{3, 4}, true},
		{"BZMPOP 0 1 a MAX", []int{3}, true},
		{"FCALL f 1 k a", []int{3}, true},
		{"XGROUP CREATE s g $", []int{2}, true},
		{"XGROUP HELP", nil, true},
	} {
		args := bytes.Fields([]byte(tc.cmd))
		ci := tab.lookup(args[0])
		var idx []int
		ok := true
		if ci != nil {
			idx, ok = ci.keyIndexes(args, nil)
		}
		if ok != tc.ok || !equalInts(idx, tc.want) {
			t.Errorf("%s: keys %v ok=%v; want %v ok=%v", tc.cmd, idx, ok, tc.want, tc.ok)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

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
	for s := 0; s < NumSlots; s += 2 {
		m = m.withOwner(s, c)
	}
	m = m.withOwner(1, c)
	if len(m.masters) != 2 || m.masters[0] != b || m.masters[1] != c {
		t.Fatalf("masters = %v", m.masters)
	}
	for s := 0; s < NumSlots; s++ {
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

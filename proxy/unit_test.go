package proxy

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
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

func TestReplyReaderFramesIncrementally(t *testing.T) {
	replies := []string{
		"+OK\r\n", "-ERR x\r\n", ":42\r\n", "$-1\r\n", "$0\r\n\r\n", "$5\r\nhello\r\n",
		"*-1\r\n", "*0\r\n", "*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
		"$" + "70000\r\n" + strings.Repeat("x", 70000) + "\r\n",
		"%1\r\n+k\r\n+v\r\n", "_\r\n",
	}
	all := strings.Join(replies, "")
	// One byte per read: every reply is still framed exactly once and whole.
	rr := newReplyReader(iotest.OneByteReader(strings.NewReader(all)))
	for i, want := range replies {
		got, err := rr.next()
		if err != nil || string(got) != want {
			t.Fatalf("reply %d: got %.40q, %v; want %.40q", i, got, err, want)
		}
	}
	if _, err := rr.next(); err != io.EOF {
		t.Fatalf("after last reply: %v, want EOF", err)
	}
	for _, bad := range []string{"?x\r\n", "$5\r\nhelloXX", "*x\r\n", "+OK\n", "$-5\r\n"} {
		rr := newReplyReader(strings.NewReader(bad))
		if _, err := rr.next(); err == nil || !errors.Is(err, errBadReply) && err != io.ErrUnexpectedEOF && err != io.EOF {
			t.Errorf("%q: err = %v, want a malformed-reply error", bad, err)
		}
	}
}

func TestParseRedirect(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind redirect
		slot int
		addr string
	}{
		{"-MOVED 3999 127.0.0.1:6381\r\n", redirMoved, 3999, "127.0.0.1:6381"},
		{"-ASK 1 [::1]:7000\r\n", redirAsk, 1, "[::1]:7000"},
		{"-MOVED 3999 :6381\r\n", redirMoved, 3999, "?:6381"},
		{"-TRYAGAIN Multiple keys request during rehashing of slot\r\n", redirTryAgain, 0, ""},
		{"-CLUSTERDOWN The cluster is down\r\n", redirClusterDown, 0, ""},
		{"-ERR MOVED\r\n", redirNone, 0, ""},
		{"+MOVED 1 a:1\r\n", redirNone, 0, ""},
		{"-MOVED 99999 a:1\r\n", redirNone, 0, ""},
	} {
		k, s, a := parseRedirect([]byte(tc.in))
		if k != tc.kind || s != tc.slot || a != tc.addr {
			t.Errorf("parseRedirect(%q) = %v %d %q", tc.in, k, s, a)
		}
	}
	if got := resolveAddr("?:6381", "10.0.0.1:7000"); got != "10.0.0.1:6381" {
		t.Errorf("resolveAddr = %q", got)
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

// scanAll runs the request-limit scanner over in as the loop does over a read, and returns
// the bytes it passed and its error.
func scanAll(in string) (string, error) {
	g := scanner{maxBulk: 1024, maxArgs: 8, maxInline: 64, maxQuery: 3500}
	ok := 0
	for ok < len(in) && g.err == nil {
		ok += g.scan([]byte(in[ok:]))
	}
	return in[:ok], g.err
}

func TestGuardLimits(t *testing.T) {
	for _, tc := range []struct{ in, wantErr, wantPassed string }{
		{"*1\r\n$4\r\nPING\r\n", "", "*1\r\n$4\r\nPING\r\n"},
		{"*1\r\n$2000\r\n", "invalid bulk length", ""},
		{"*1\r\n$4\r\nPING\r\n*1\r\n$2147483648\r\n", "invalid bulk length", "*1\r\n$4\r\nPING\r\n"},
		{"*9\r\n", "invalid multibulk length", ""},
		{"*1\r\n$-3\r\n", "invalid bulk length", ""},
		{"*1\r\n:4\r\n", "expected '$', got ':'", ""},
		{"*12345678901234567890123456\r\n", "invalid multibulk length", ""},
		{strings.Repeat("A", 100), "too big inline request", ""},
		{"PING\r\n" + strings.Repeat("A", 100), "too big inline request", "PING\r\n"},
		{"*4\r\n$1000\r\n" + strings.Repeat("x", 1000) + "\r\n$1000\r\n" + strings.Repeat("x", 1000) + "\r\n$1000\r\n" + strings.Repeat("x", 1000) + "\r\n$1000\r\n", "client-query-buffer-limit", ""},
		{"\x00\x01\x02\xff\r\n", "", "\x00\x01\x02\xff\r\n"},
	} {
		got, err := scanAll(tc.in)
		if tc.wantErr == "" {
			if err != nil || string(got) != tc.wantPassed {
				t.Errorf("%.30q: passed %q, err %v", tc.in, got, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%.30q: err = %v, want %q", tc.in, err, tc.wantErr)
		}
		if !strings.HasPrefix(tc.in, string(got)) || !strings.HasPrefix(string(got), tc.wantPassed) || len(got) > len(tc.wantPassed)+3500 {
			t.Errorf("%.30q: passed %q before the error, want %q", tc.in, got, tc.wantPassed)
		}
	}
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

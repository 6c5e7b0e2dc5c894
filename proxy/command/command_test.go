package command

import (
	"bytes"
	"math/rand/v2"
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
	tab := Builtin()
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
		ci := tab.Lookup(args[0])
		var idx []int
		ok := true
		if ci != nil {
			idx, ok = ci.KeyIndexes(args, nil)
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

package command

import (
	"testing"
)

func BenchmarkKeySlot(b *testing.B) {
	keys := [][]byte{[]byte("key:000000012345"), []byte("{user1000}.following"), []byte("plain")}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		KeySlot(keys[i%len(keys)])
	}
}

package resp

import (
	"testing"
)

// BenchmarkFrameReply is the loop's framing of backend replies: a bulk GET reply and an
// MGET array.
func BenchmarkFrameReply(b *testing.B) {
	bulk := []byte("$64\r\n" + string(make([]byte, 64)) + "\r\n")
	arr := AppendArrayHeader(nil, 10)
	for i := 0; i < 10; i++ {
		arr = append(arr, bulk...)
	}
	for _, tc := range []struct {
		name string
		rep  []byte
	}{{"bulk", bulk}, {"array10", arr}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.rep)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if n, _, err := FrameReply(tc.rep); n != len(tc.rep) || err != nil {
					b.Fatal("not framed")
				}
			}
		})
	}
}

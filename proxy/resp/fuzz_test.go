package resp

import (
	"bytes"
	"testing"
	"testing/iotest"
)

// FuzzReplyFramer feeds arbitrary backend bytes to the reply framer: it must never panic,
// every frame it returns is exactly the next bytes of the stream, and memory stays within
// the limits it was given.
func FuzzReplyFramer(f *testing.F) {
	for _, s := range []string{
		"+OK\r\n", "-MOVED 3999 127.0.0.1:6381\r\n", ":42\r\n", "$5\r\nhello\r\n", "$-1\r\n",
		"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", "%1\r\n+k\r\n+v\r\n", "*-1\r\n", "$1073741824\r\nabc",
		"-ASK 1 :7000\r\n", "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nmsg\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rr := NewReader(iotest.HalfReader(bytes.NewReader(data)))
		var framed []byte
		for {
			rep, err := rr.Next()
			if err != nil {
				break
			}
			framed = append(framed, rep...)
			if !bytes.HasPrefix(data, framed) {
				t.Fatalf("frames %q are not a prefix of the input", framed)
			}
			kind, slot, _ := ParseRedirect(rep)
			if kind != RedirNone && (slot < 0 || slot >= numSlots) {
				t.Fatalf("redirect slot %d", slot)
			}
			SplitArray(rep)
		}
	})
}

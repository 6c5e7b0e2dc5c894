package resp

import (
	"strings"
	"testing"
)

// A node's reply nested deeper than any client may send (a script returning a
// self-referencing table: about 8000 levels from Redis 7.0) is framed whole, in pieces too.
func TestFrameDeepReply(t *testing.T) {
	for _, depth := range []int{65, 8000, 100000} {
		rep := strings.Repeat("*1\r\n", depth) + "-ERR reached lua stack limit\r\n"
		n, _, err := FrameReply([]byte(rep + "+NEXT\r\n"))
		if err != nil || n != len(rep) {
			t.Fatalf("depth %d: n %d (want %d), %v", depth, n, len(rep), err)
		}
		for _, cut := range []int{1, len(rep) / 2, len(rep) - 1} {
			n, need, err := FrameReply([]byte(rep[:cut]))
			if n != 0 || err != nil || need <= cut {
				t.Fatalf("depth %d cut %d: n %d need %d err %v", depth, cut, n, need, err)
			}
		}
	}
}

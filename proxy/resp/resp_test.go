package resp

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReplyReaderFramesIncrementally(t *testing.T) {
	replies := []string{
		"+OK\r\n", "-ERR x\r\n", ":42\r\n", "$-1\r\n", "$0\r\n\r\n", "$5\r\nhello\r\n",
		"*-1\r\n", "*0\r\n", "*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
		"$" + "70000\r\n" + strings.Repeat("x", 70000) + "\r\n",
		"%1\r\n+k\r\n+v\r\n", "_\r\n",
	}
	all := strings.Join(replies, "")
	// One byte per read: every reply is still framed exactly once and whole.
	rr := NewReader(iotest.OneByteReader(strings.NewReader(all)))
	for i, want := range replies {
		got, err := rr.Next()
		if err != nil || string(got) != want {
			t.Fatalf("reply %d: got %.40q, %v; want %.40q", i, got, err, want)
		}
	}
	if _, err := rr.Next(); err != io.EOF {
		t.Fatalf("after last reply: %v, want EOF", err)
	}
	for _, bad := range []string{"?x\r\n", "$5\r\nhelloXX", "*x\r\n", "+OK\n", "$-5\r\n"} {
		rr := NewReader(strings.NewReader(bad))
		if _, err := rr.Next(); err == nil || !errors.Is(err, ErrBadReply) && err != io.ErrUnexpectedEOF && err != io.EOF {
			t.Errorf("%q: err = %v, want a malformed-reply error", bad, err)
		}
	}
}

func TestParseRedirect(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind Redirect
		slot int
		addr string
	}{
		{"-MOVED 3999 127.0.0.1:6381\r\n", RedirMoved, 3999, "127.0.0.1:6381"},
		{"-ASK 1 [::1]:7000\r\n", RedirAsk, 1, "[::1]:7000"},
		{"-MOVED 3999 :6381\r\n", RedirMoved, 3999, "?:6381"},
		{"-TRYAGAIN Multiple keys request during rehashing of slot\r\n", RedirTryAgain, 0, ""},
		{"-CLUSTERDOWN The cluster is down\r\n", RedirClusterDown, 0, ""},
		{"-ERR MOVED\r\n", RedirNone, 0, ""},
		{"+MOVED 1 a:1\r\n", RedirNone, 0, ""},
		{"-MOVED 99999 a:1\r\n", RedirNone, 0, ""},
	} {
		k, s, a := ParseRedirect([]byte(tc.in))
		if k != tc.kind || s != tc.slot || a != tc.addr {
			t.Errorf("ParseRedirect(%q) = %v %d %q", tc.in, k, s, a)
		}
	}
}

// scanAll runs the request-limit scanner over in as the loop does over a read, and returns
// the bytes it passed and its error.
func scanAll(in string) (string, error) {
	g := Scanner{maxBulk: 1024, maxArgs: 8, maxInline: 64, maxQuery: 3500}
	ok := 0
	for ok < len(in) && g.Err() == nil {
		ok += g.Scan([]byte(in[ok:]))
	}
	return in[:ok], g.Err()
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

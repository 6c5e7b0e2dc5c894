package testutil

import (
	"strings"
	"sync"
	"testing"
)

// TestSyncBufferConcurrent writes from several goroutines while reading: every byte
// arrives, and -race sees no unguarded access.
func TestSyncBufferConcurrent(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				if n, err := b.Write([]byte("ab")); n != 2 || err != nil {
					t.Errorf("Write = %d, %v", n, err)
				}
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := len(b.String()); got != 800 {
		t.Fatalf("kept %d bytes, want 800", got)
	}
}

// TestSyncBufferLimit keeps the first Limit bytes, cutting the write that crosses it,
// and reports every write as complete so that the writer (a process's stdout) never fails.
func TestSyncBufferLimit(t *testing.T) {
	b := SyncBuffer{Limit: 5}
	for _, w := range []string{"abc", "defg", "hij"} {
		if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v; want %d, nil", w, n, err, len(w))
		}
	}
	if got := b.String(); got != "abcde" {
		t.Fatalf("kept %q, want %q", got, "abcde")
	}
	unbounded := SyncBuffer{}
	unbounded.Write([]byte(strings.Repeat("x", 10)))
	if got := len(unbounded.String()); got != 10 {
		t.Fatalf("Limit 0 kept %d bytes, want 10", got)
	}
}

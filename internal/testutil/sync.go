package testutil

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// SyncBuffer is an io.Writer safe for concurrent use whose contents can be read while
// it is written (log or progress output of goroutines under test).
type SyncBuffer struct {
	// Limit, when positive, bounds what is kept: the first Limit bytes (the output of
	// a long-running process under test); later writes are accepted and dropped.
	Limit int

	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p, or what of it fits under Limit. It always reports len(p) written,
// so that a writer is never failed for output the buffer does not keep.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Limit > 0 {
		room := max(s.Limit-s.b.Len(), 0)
		s.b.Write(p[:min(len(p), room)])
		return len(p), nil
	}
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WaitFor polls cond until it holds; after d the test fails, naming what it waited for.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

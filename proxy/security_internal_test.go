package proxy

import (
	"strings"
	"testing"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

// TestCheckAuthComparesDigests (issue 28, finding 18): passwords of any length, and
// guesses of other lengths, compare correctly through their digests.
func TestCheckAuthComparesDigests(t *testing.T) {
	s := &Server{}
	cfg := config.Default()
	cfg.RequirePass = strings.Repeat("p", 1000)
	cfg.Users = []config.User{{Name: "u", Password: "x"}}
	s.cfgp.Store(cfg)
	for _, tc := range []struct {
		user, pass string
		ok         bool
	}{
		{"", strings.Repeat("p", 1000), true}, {"", strings.Repeat("p", 999), false}, {"", "", false},
		{"default", strings.Repeat("p", 1000) + "p", false}, {"u", "x", true}, {"u", "xx", false}, {"u", "", false},
	} {
		if _, ok := s.checkAuth(tc.user, tc.pass); ok != tc.ok {
			t.Errorf("checkAuth(%q, %d bytes) = %v", tc.user, len(tc.pass), ok)
		}
	}
}

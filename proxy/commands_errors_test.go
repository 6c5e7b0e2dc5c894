package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

// sameLines sends input to the proxy and to the reference on raw connections and fails
// the test unless the first n reply lines are identical.
func sameLines(t *testing.T, p, ref *rawConn, input string, n int) {
	t.Helper()
	got, want := exchange(t, p, input, n), exchange(t, ref, input, n)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%q:\n proxy:     %q\n reference: %q", input, got, want)
	}
}

// TestRedisErrorTexts checks that the errors a single Redis gives before AUTH and inside
// MULTI come out of the proxy word for word, and that scripts over several slots get a
// cluster node's error.
func TestRedisErrorTexts(t *testing.T) {
	c := sharedCluster(t)
	ctx := context.Background()
	ref := startReference(t)
	refAddr := ref.Options().Addr
	if err := ref.ConfigSet(ctx, "requirepass", "pw").Err(); err != nil {
		t.Fatal(err)
	}
	tp := startProxy(t, c, func(cfg *config.Config) { cfg.RequirePass = "pw" })

	t.Run("before AUTH", func(t *testing.T) {
		p, r := dialRaw(t, tp.addr), dialRaw(t, refAddr)
		sameLines(t, p, r, "PING\r\n", 1)
		sameLines(t, p, r, "ECHO x\r\n", 1)
		sameLines(t, p, r, "GET k\r\n", 1)
		sameLines(t, p, r, "MULTI\r\n", 1)
		sameLines(t, p, r, "AUTH nope\r\n", 1)
		sameLines(t, p, r, "AUTH pw\r\nPING\r\n", 2)
	})

	t.Run("inside MULTI", func(t *testing.T) {
		p, r := dialRaw(t, tp.addr), dialRaw(t, refAddr)
		sameLines(t, p, r, "AUTH pw\r\n", 1)
		for _, cmd := range []string{"SAVE", "SHUTDOWN", "SYNC", "PSYNC ? -1"} {
			sameLines(t, p, r, fmt.Sprintf("MULTI\r\nSET k{x} 1\r\n%s\r\nEXEC\r\n", cmd), 4)
		}
		sameLines(t, p, r, "MULTI\r\nWATCH k\r\nMULTI\r\nDISCARD\r\n", 4)
		sameLines(t, p, r, "EXEC\r\nDISCARD\r\n", 2)
		sameLines(t, p, r, "MULTI\r\nNOSUCHCMD a\r\nEXEC\r\n", 3)
		sameLines(t, p, r, "MULTI\r\nGET\r\nEXEC\r\n", 3)
		sameLines(t, p, r, "GET k{x}\r\n", 1) // nothing ran
	})

	t.Run("scripts over several slots", func(t *testing.T) {
		masters, err := c.Masters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		keys := keysOnDistinctMasters(t, c, "script-key")
		cl := tp.client(t, func(o *redis.Options) { o.Password = "pw" })
		args := []any{"EVAL", "return redis.call('get', KEYS[1])", 2, keys[0], keys[1]}
		got := do(ctx, cl, args...)
		want := do(ctx, c.Client(masters[0]), args...)
		if got != want || !strings.HasPrefix(got.err, "CROSSSLOT") {
			t.Errorf("EVAL over two slots: proxy %#v, cluster node %#v", got, want)
		}
	})
}

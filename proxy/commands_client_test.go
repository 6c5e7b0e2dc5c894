package proxy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
)

// clientFields parses one CLIENT LIST line.
func clientFields(line string) map[string]string {
	kv := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

// clientLines returns CLIENT LIST [args] by id.
func clientLines(t testing.TB, cl doer, args ...any) map[string]map[string]string {
	t.Helper()
	s, err := cl.Do(context.Background(), append([]any{"CLIENT", "LIST"}, args...)...).Text()
	if err != nil {
		t.Fatalf("CLIENT LIST %v: %v", args, err)
	}
	out := map[string]map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			f := clientFields(l)
			out[f["id"]] = f
		}
	}
	return out
}

func TestClientListKill(t *testing.T) {
	c := sharedCluster(t)
	ctx := context.Background()
	tp := startProxy(t, c, nil)
	ref := startReference(t)
	one := func(opts ...func(*redis.Options)) (*redis.Conn, string) {
		cl := tp.client(t, opts...)
		conn := cl.Conn()
		t.Cleanup(func() { conn.Close() })
		id, err := conn.ClientID(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		return conn, fmt.Sprint(id)
	}
	me, meID := one()

	t.Run("fields and filters", func(t *testing.T) {
		_, otherID := one()
		info, _ := me.Do(ctx, "CLIENT", "INFO").Text()
		f := clientFields(info)
		want := clientFields(mustText(t, ref.Do(ctx, "CLIENT", "INFO")))
		for _, k := range []string{"id", "addr", "laddr", "fd", "name", "age", "idle", "flags", "db", "sub", "psub", "multi", "user", "resp"} {
			if _, ok := want[k]; !ok {
				t.Fatalf("reference lacks %s", k)
			}
			if _, ok := f[k]; !ok {
				t.Errorf("CLIENT INFO lacks %s: %q", k, info)
			}
		}
		if f["id"] != meID || f["flags"] != "N" || f["user"] != "default" || f["laddr"] != tp.addr {
			t.Errorf("CLIENT INFO %q", info)
		}
		all := clientLines(t, me)
		if all[meID] == nil || all[otherID] == nil {
			t.Errorf("CLIENT LIST lacks %s or %s: %v", meID, otherID, all)
		}
		if got := clientLines(t, me, "ID", otherID); len(got) != 1 || got[otherID] == nil {
			t.Errorf("CLIENT LIST ID %s: %v", otherID, got)
		}
		// A subscriber is of type pubsub, with flag P; a blocked client has flag b.
		ps := tp.client(t).Subscribe(ctx, fmt.Sprintf("ch%d", rand.Int()))
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		subs := clientLines(t, me, "TYPE", "pubsub")
		if len(subs) != 1 {
			t.Errorf("CLIENT LIST TYPE pubsub: %v", subs)
		}
		for _, l := range subs {
			if l["flags"] != "P" {
				t.Errorf("subscriber flags %q", l["flags"])
			}
		}
		if clientLines(t, me, "TYPE", "normal")[meID] == nil {
			t.Error("CLIENT LIST TYPE normal lacks the caller")
		}
		blocker, blockerID := one()
		list := fmt.Sprintf("bl%d", rand.Int())
		done := make(chan error, 1)
		go func() { done <- blocker.BLPop(ctx, 10*time.Second, list).Err() }()
		testutil.WaitFor(t, 5*time.Second, "flag b", func() bool {
			l := clientLines(t, me, "ID", blockerID)[blockerID]
			return l != nil && l["flags"] == "b"
		})
		me.RPush(ctx, list, "x")
		<-done
		same(t, me, ref, "CLIENT", "LIST", "TYPE", "nosuch")
		same(t, me, ref, "CLIENT", "LIST", "ID", "abc")
		same(t, me, ref, "CLIENT", "LIST", "BOGUS")
	})

	t.Run("KILL", func(t *testing.T) {
		victim, victimID := one()
		same(t, me, ref, "CLIENT", "KILL", "ID", "999999")
		same(t, me, ref, "CLIENT", "KILL", "127.0.0.1:1")
		same(t, me, ref, "CLIENT", "KILL", "ID", "0")
		same(t, me, ref, "CLIENT", "KILL", "SKIPME", "maybe")
		if n, err := me.Do(ctx, "CLIENT", "KILL", "ID", victimID).Int(); err != nil || n != 1 {
			t.Fatalf("CLIENT KILL ID: %d, %v", n, err)
		}
		if err := victim.Ping(ctx).Err(); err == nil {
			t.Error("killed client still served")
		}
		// By address (old form), and by type.
		v2, v2ID := one()
		addr := clientLines(t, me, "ID", v2ID)[v2ID]["addr"]
		if err := me.Do(ctx, "CLIENT", "KILL", addr).Err(); err != nil {
			t.Fatalf("CLIENT KILL %s: %v", addr, err)
		}
		if err := v2.Ping(ctx).Err(); err == nil {
			t.Error("client killed by address still served")
		}
		ps := tp.client(t).Subscribe(ctx, fmt.Sprintf("ch%d", rand.Int()))
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := me.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Int(); err != nil || n != 1 {
			t.Errorf("CLIENT KILL TYPE pubsub: %d, %v", n, err)
		}
		// SKIPME yes (the default) spares the caller; USER default matches everybody else.
		if n, err := me.Do(ctx, "CLIENT", "KILL", "USER", "default").Int(); err != nil || n < 1 {
			t.Errorf("CLIENT KILL USER default: %d, %v", n, err)
		}
		if err := me.Ping(ctx).Err(); err != nil {
			t.Errorf("CLIENT KILL killed the caller: %v", err)
		}
	})
}

func mustText(t testing.TB, cmd *redis.Cmd) string {
	t.Helper()
	s, err := cmd.Text()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

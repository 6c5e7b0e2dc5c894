package proxy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// subscriber opens a subscription and waits for its n confirmations.
func subscriber(t testing.TB, cl *redis.Client, channels, patterns []string) *redis.PubSub {
	t.Helper()
	ctx := context.Background()
	ps := cl.Subscribe(ctx)
	t.Cleanup(func() { ps.Close() })
	if len(channels) > 0 {
		if err := ps.Subscribe(ctx, channels...); err != nil {
			t.Fatal(err)
		}
	}
	if len(patterns) > 0 {
		if err := ps.PSubscribe(ctx, patterns...); err != nil {
			t.Fatal(err)
		}
	}
	for range len(channels) + len(patterns) {
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return ps
}

// messages returns the next n messages ps receives (pattern|channel|payload), sorted:
// messages from different masters may interleave differently than on one Redis. It
// fails the test if another arrives soon after.
func messages(t testing.TB, ps *redis.PubSub, n int) []string {
	t.Helper()
	out := make([]string, 0, n)
	for range n {
		m := receive(t, ps)
		out = append(out, m.Pattern+"|"+m.Channel+"|"+m.Payload)
	}
	if m, err := ps.ReceiveTimeout(context.Background(), 300*time.Millisecond); err == nil {
		t.Errorf("after %q, one more: %#v", out, m)
	}
	slices.Sort(out)
	return out
}

// messagesUntil returns what ps receives (pattern|channel|payload) up to a message with
// payload end and what follows it at once, sorted.
func messagesUntil(t testing.TB, ps *redis.PubSub, end string) []string {
	t.Helper()
	var out []string
	for {
		m := receive(t, ps)
		out = append(out, m.Pattern+"|"+m.Channel+"|"+m.Payload)
		if m.Payload == end {
			break
		}
	}
	for {
		v, err := ps.ReceiveTimeout(context.Background(), 300*time.Millisecond)
		m, ok := v.(*redis.Message)
		if err != nil || !ok {
			slices.Sort(out)
			return out
		}
		out = append(out, m.Pattern+"|"+m.Channel+"|"+m.Payload)
	}
}

// PUBLISH and PUBSUB count the proxy's subscribers as a single Redis counts its own, with
// the channels on different masters.
func TestPubSubCounts(t *testing.T) {
	c := sharedCluster(t)
	tp := startProxy(t, c, nil)
	p := tp.client(t)
	ref := startReference(t)
	prefix := fmt.Sprintf("cnt%d:", rand.Int())
	chans := keysOnDistinctMasters(t, c, prefix)
	if len(chans) < 3 {
		t.Fatalf("channels on distinct masters: %v", chans)
	}
	pats := []string{prefix + "*", prefix + "?*", "other" + prefix + "*"}

	// The same subscribers on the proxy and on the reference.
	subs := map[*redis.Client][]*redis.PubSub{}
	for _, cl := range []*redis.Client{p, ref} {
		subs[cl] = []*redis.PubSub{
			subscriber(t, cl, chans[:2], nil),
			subscriber(t, cl, chans[1:], pats[:1]),
			subscriber(t, cl, nil, pats),
		}
	}
	for _, ch := range append(chans, prefix+"none", "nomatch") {
		same(t, p, ref, "PUBLISH", ch, "to "+ch)
	}
	same(t, p, ref, "PUBLISH", chans[0], "end")
	same(t, p, ref, "PUBSUB", "NUMSUB", chans[0], chans[1], chans[2], prefix+"none")
	same(t, p, ref, "PUBSUB", "NUMSUB")
	same(t, p, ref, "PUBSUB", "NUMPAT")
	sameSet(t, p, ref, "PUBSUB", "CHANNELS", prefix+"*")
	same(t, p, ref, "PUBSUB", "CHANNELS", "nomatch"+prefix)
	same(t, p, ref, "PUBLISH", chans[0])

	// Every subscriber got each message once, as from the reference.
	for i := range subs[p] {
		want := messagesUntil(t, subs[ref][i], "end")
		if got := messages(t, subs[p][i], len(want)); !slices.Equal(got, want) {
			t.Errorf("subscriber %d:\n proxy:     %q\n reference: %q", i, got, want)
		}
	}

	// Unsubscribing changes the counts as on Redis.
	confirm := func(ps *redis.PubSub) string {
		m, err := ps.Receive(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%#v", m)
	}
	for _, cl := range []*redis.Client{p, ref} {
		if err := subs[cl][1].Unsubscribe(context.Background(), chans[1]); err != nil {
			t.Fatal(err)
		}
		if err := subs[cl][2].PUnsubscribe(context.Background(), pats[1]); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 2; i++ {
		if got, want := confirm(subs[p][i]), confirm(subs[ref][i]); got != want {
			t.Errorf("subscriber %d confirmation:\n proxy:     %s\n reference: %s", i, got, want)
		}
	}
	same(t, p, ref, "PUBSUB", "NUMSUB", chans[0], chans[1], chans[2])
	same(t, p, ref, "PUBSUB", "NUMPAT")
	same(t, p, ref, "PUBLISH", chans[1], "x")

	// Confirmations on the wire: in argument order, counted over the client's channels
	// and patterns, across masters.
	script := "SUBSCRIBE " + strings.Join(chans, " ") + "\r\nPSUBSCRIBE " + pats[0] + " " + pats[2] + "\r\nSUBSCRIBE " + chans[0] +
		"\r\nUNSUBSCRIBE " + chans[1] + " " + prefix + "none\r\nPUNSUBSCRIBE " + pats[2] + "\r\nPING\r\nUNSUBSCRIBE " + chans[0] + " " + chans[2] +
		"\r\nPUNSUBSCRIBE " + pats[0] + "\r\nUNSUBSCRIBE\r\nPING\r\n"
	lines := 3*6 + 2*6 + 6 + 2*6 + 6 + 5 + 2*6 + 6 + 5 + 1
	got := exchange(t, dialRaw(t, tp.addr), script, lines)
	want := exchange(t, dialRaw(t, ref.Options().Addr), script, lines)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("proxy:\n%s\nreference:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Keyspace and keyevent notifications of every master arrive, once each, merged into
// one stream.
func TestKeyspaceNotificationsFromEveryMaster(t *testing.T) {
	c := sharedCluster(t)
	ctx := context.Background()
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		if !n.Alive() {
			continue
		}
		if err := c.Client(n).ConfigSet(ctx, "notify-keyspace-events", "KEA").Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			if n.Alive() {
				c.Client(n).ConfigSet(ctx, "notify-keyspace-events", "")
			}
		}
	})
	tp := startProxy(t, c, nil)
	p := tp.client(t)
	ref := startReference(t)
	if err := ref.ConfigSet(ctx, "notify-keyspace-events", "KEA").Err(); err != nil {
		t.Fatal(err)
	}
	keys := keysOnDistinctMasters(t, c, fmt.Sprintf("ev%d:", rand.Int()))
	if len(keys) != len(masters) {
		t.Fatalf("keys %v for %d masters", keys, len(masters))
	}
	end := keys[0] + "end"
	p3 := tp.client(t, func(o *redis.Options) { o.Protocol = 3 }) // push frames
	for _, cl := range []*redis.Client{p, p3, ref, ref} {         // as many subscribers on each side
		events := subscriber(t, cl, nil, []string{"__keyevent@0__:*"})
		space := subscriber(t, cl, []string{"__keyspace@0__:" + keys[1], "__keyspace@0__:" + end}, []string{"__keyspace@0__:" + keys[2][:3] + "*"})
		for _, k := range keys {
			if err := cl.Set(ctx, k, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if err := cl.Del(ctx, k).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.Set(ctx, end, "end", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := cl.Del(ctx, end).Err(); err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, k := range append(keys, end) {
			want = append(want, "|__keyevent@0__:set|"+k, "|__keyevent@0__:del|"+k)
		}
		for i := range want {
			want[i] = "__keyevent@0__:*" + want[i]
		}
		slices.Sort(want)
		if got := messages(t, events, len(want)); !slices.Equal(got, want) {
			t.Errorf("%s: keyevents\n got:  %q\n want: %q", cl.Options().Addr, got, want)
		}
		// keys[1] and end by channel, every key by the pattern (they share its prefix).
		pat := "__keyspace@0__:" + keys[2][:3] + "*"
		want = want[:0]
		for _, k := range append(keys, end) {
			for _, ev := range []string{"set", "del"} {
				if k == keys[1] || k == end {
					want = append(want, "|__keyspace@0__:"+k+"|"+ev)
				}
				want = append(want, pat+"|__keyspace@0__:"+k+"|"+ev)
			}
		}
		slices.Sort(want)
		if got := messages(t, space, len(want)); !slices.Equal(got, want) {
			t.Errorf("%s: keyspace\n got:  %q\n want: %q", cl.Options().Addr, got, want)
		}
	}
	same(t, p, ref, "PUBSUB", "NUMPAT")
	same(t, p, ref, "PUBSUB", "NUMSUB", "__keyspace@0__:"+keys[1], "__keyspace@0__:"+keys[0])
}

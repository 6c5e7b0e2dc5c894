package proxy_test

import (
	"context"
	"fmt"
	"math/rand"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
)

// nodePubsubConns counts the connections of n in Pub/Sub mode (CLIENT LIST flag P).
func nodePubsubConns(t *testing.T, c *testcluster.Cluster, n *testcluster.Node) int {
	t.Helper()
	out, err := c.Client(n).Do(context.Background(), "CLIENT", "LIST").Text()
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		for _, kv := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(kv, "flags="); ok && strings.Contains(v, "P") {
				count++
			}
		}
	}
	return count
}

// Subscription connections are private node connections relayed by the client's event
// loop: a subscriber's goroutines do not grow with its node connections (a pattern is
// subscribed on every master, a channel on one), every message arrives, they count against
// blocking-connections, and the nodes see the connections closed once the subscribers
// disconnect or RESET.
func TestPubSubPrivateConnsNoGoroutinePerNode(t *testing.T) {
	c := sharedCluster(t)
	ctx := context.Background()
	masters := threeMasters(t, c)
	const clients = 20
	tp := startProxy(t, c, func(cfg *config.Config) { cfg.BlockingConnections = clients * (len(masters) + 1) })
	p := tp.client(t)
	prefix := fmt.Sprintf("plink%d:", rand.Int())
	p.Get(ctx, prefix) // the loops' shared connections exist before counting

	before := map[string]int{}
	for _, m := range masters {
		before[m.Addr] = nodePubsubConns(t, c, m)
	}
	dial := func() []*rawConn {
		out := make([]*rawConn, clients)
		for i := range out {
			out[i] = dialRaw(t, tp.addr)
			exchange(t, out[i], "PING\r\n", 1)
		}
		return out
	}
	// subscribe subscribes every connection with cmd (one confirmation each) and returns
	// how many goroutines the proxy's process gained.
	subscribe := func(conns []*rawConn, cmd, name string) int {
		runtime.GC()
		time.Sleep(50 * time.Millisecond)
		g0 := runtime.NumGoroutine()
		for _, r := range conns {
			got := exchange(t, r, fmt.Sprintf("%s %s\r\n", cmd, name), 6)
			if got[1] != "$"+fmt.Sprint(len(strings.ToLower(cmd))) || got[5] != ":1" {
				t.Fatalf("%s confirmation %q", cmd, got)
			}
		}
		time.Sleep(100 * time.Millisecond) // dial goroutines end
		return runtime.NumGoroutine() - g0
	}
	chans, pats := dial(), dial()
	dChan := subscribe(chans, "SUBSCRIBE", prefix+"ch")
	dPat := subscribe(pats, "PSUBSCRIBE", prefix+"*")
	t.Logf("%d masters; goroutines per subscriber: %.2f with one node connection (SUBSCRIBE), %.2f with %d (PSUBSCRIBE)",
		len(masters), float64(dChan)/clients, float64(dPat)/clients, len(masters))
	if extra := dPat - dChan; extra >= clients/2 {
		t.Errorf("%d node connections per subscriber cost %d goroutines more than one (%d subscribers)", len(masters), extra, clients)
	}

	// Each master holds one connection per pattern subscriber, the channel's one more
	// per channel subscriber.
	chOwner := 0
	for _, m := range masters {
		n := nodePubsubConns(t, c, m) - before[m.Addr]
		if n == 2*clients {
			chOwner++
		} else if n != clients {
			t.Errorf("%s: %d subscription connections, want %d or %d", m.Addr, n, clients, 2*clients)
		}
	}
	if chOwner != 1 {
		t.Errorf("%d masters hold the channel's subscriptions", chOwner)
	}

	// Every subscriber gets the message.
	if n, err := p.Publish(ctx, prefix+"ch", "hello").Result(); err != nil || n != 2*clients {
		t.Fatalf("PUBLISH: %d receivers, %v", n, err)
	}
	for _, r := range chans {
		if got := r.reply(); !strings.HasSuffix(got, "\nmessage\n"+prefix+"ch\nhello") {
			t.Fatalf("channel subscriber got %q", got)
		}
	}
	for _, r := range pats {
		if got := r.reply(); !strings.HasSuffix(got, "\npmessage\n"+prefix+"*\n"+prefix+"ch\nhello") {
			t.Fatalf("pattern subscriber got %q", got)
		}
	}

	// They hold every slot of blocking-connections.
	if got := exchange(t, dialRaw(t, tp.addr), "SUBSCRIBE "+prefix+"more\r\n", 1)[0]; !strings.Contains(got, "blocking-connections are in use") {
		t.Errorf("SUBSCRIBE over the limit: %q", got)
	}

	// The subscribers go away: so do their node connections, and their slots of
	// blocking-connections.
	for _, r := range append(chans, pats...) {
		r.c.Close()
	}
	for _, m := range masters {
		testutil.WaitFor(t, 10*time.Second, "subscription connections closed on "+m.Addr, func() bool {
			return nodePubsubConns(t, c, m) == before[m.Addr]
		})
	}
	again := dial()
	for _, r := range again {
		if got := exchange(t, r, "PSUBSCRIBE "+prefix+"*\r\n", 6); got[5] != ":1" {
			t.Fatalf("PSUBSCRIBE after the subscribers left: %q", got)
		}
	}
	// RESET ends the subscriptions: their node connections are closed too.
	for _, r := range again {
		if got := exchange(t, r, "RESET\r\n", 1)[0]; got != "+RESET" {
			t.Fatalf("RESET: %q", got)
		}
	}
	for _, m := range masters {
		testutil.WaitFor(t, 10*time.Second, "subscription connections closed on "+m.Addr+" after RESET", func() bool {
			return nodePubsubConns(t, c, m) == before[m.Addr]
		})
	}
}

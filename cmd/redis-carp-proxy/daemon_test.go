package main

import (
	"context"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Static mode (the default): the daemon serves through the gate at once, and stops
// cleanly.
func TestDaemonStaticServes(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runDaemon(ctx, []string{"--listen", addr, "--cluster-seeds", strings.Join(c.Seeds(), ","),
			"--admin-listen", "", "--shutdown-timeout", "1s"}, io.Discard)
	}()
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	defer rdb.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := rdb.Set(ctx, "daemon:static", "ok", 0).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy not serving in static mode: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v, err := rdb.Get(ctx, "daemon:static").Result(); err != nil || v != "ok" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not stop")
	}
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("listener still open after shutdown")
	}
}

// A CARP mode that cannot work is an error at start, not a proxy that never serves.
func TestDaemonCarpConfigErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--carp-mode", "vip"}, // no vip
		{"--carp-mode", "static", "--carp-demote", "yes"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := runDaemon(ctx, append([]string{"--listen", freeAddr(t), "--cluster-seeds", "127.0.0.1:1", "--admin-listen", ""}, args...), io.Discard)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "carp") {
			t.Errorf("%v: err = %v", args, err)
		}
	}
}

// Active-active in static mode on loopback: two VIPs (127.0.0.2 and 127.0.0.3, on lo), one
// listener each on listen's port, one cluster behind both; /readyz, INFO proxy and the
// metrics report each VIP.
func TestDaemonServesEveryVIP(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Replicas: -1})
	_, port, _ := net.SplitHostPort(freeAddr(t))
	admin := freeAddr(t)
	vipA, vipB := "127.0.0.2", "127.0.0.3"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runDaemon(ctx, []string{"--listen", ":" + port, "--vips", vipA + "@1," + vipB + "@2",
			"--cluster-seeds", strings.Join(c.Seeds(), ","), "--admin-listen", admin, "--shutdown-timeout", "1s"}, io.Discard)
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("daemon did not stop")
		}
		for _, v := range []string{vipA, vipB} {
			if c, err := net.DialTimeout("tcp", net.JoinHostPort(v, port), 200*time.Millisecond); err == nil {
				c.Close()
				t.Errorf("%s still listening after shutdown", v)
			}
		}
	}()
	var body string
	testutil.WaitFor(t, 15*time.Second, "the daemon to be ready", func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		return resp.StatusCode == 200 && strings.Count(body, "covers all 16384 slots") == 2
	})
	if !strings.HasPrefix(body, vipA+": active (CARP state static), slot map epoch ") || !strings.Contains(body, "\n"+vipB+": active (CARP state static)") {
		t.Errorf("/readyz: %q", body)
	}
	if code, b := httpGet(t, "http://"+admin+"/readyz?vip="+vipB); code != 200 || !strings.HasPrefix(b, "active (CARP state static), slot map epoch ") {
		t.Errorf("/readyz?vip=%s: %d %q", vipB, code, b)
	}
	if code, b := httpGet(t, "http://"+admin+"/readyz?vip=127.0.0.9"); code != 404 || !strings.Contains(b, "this proxy serves 127.0.0.2, 127.0.0.3") {
		t.Errorf("/readyz?vip=127.0.0.9: %d %q", code, b)
	}

	ra, rb := dialRESP(t, net.JoinHostPort(vipA, port)), dialRESP(t, net.JoinHostPort(vipB, port))
	if r := ra.do("SET", "aa:{x}", "1"); r != "OK" {
		t.Fatalf("SET through %s: %q", vipA, r)
	}
	if r := rb.do("GET", "aa:{x}"); r != "1" {
		t.Fatalf("GET through %s: %q", vipB, r)
	}
	info := rb.do("INFO", "proxy")
	for _, want := range []string{"carp_state:static\r\nactive:1\r\n", "vips:2\r\n",
		"vip0:addr=127.0.0.2,carp_state=static,active=1,clients=1\r\n", "vip1:addr=127.0.0.3,carp_state=static,active=1,clients=1\r\n"} {
		if !strings.Contains(info, want) {
			t.Errorf("INFO proxy lacks %q:\n%s", want, info)
		}
	}
	m, _ := scrape(t, "http://"+admin)
	for _, v := range []string{vipA, vipB} {
		if m.sum("active", "vip", v) != 1 || m.sum("carp_state", "vip", v) != 2 || m.sum("client_connections", "vip", v) != 1 {
			t.Errorf("vip %s: active %v, carp_state %v, client_connections %v; want 1, 2, 1", v,
				m.sum("active", "vip", v), m.sum("carp_state", "vip", v), m.sum("client_connections", "vip", v))
		}
	}
}

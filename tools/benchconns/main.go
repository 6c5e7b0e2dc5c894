// Command benchconns measures what an idle client connection costs the proxy: it starts a
// 3-master cluster and the proxy binary, opens -conns client connections (raising
// RLIMIT_NOFILE first), and reports the proxy's RSS growth per connection, both for
// connections that never sent a command and after one PING each. Run it with
// `make bench-conns`.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-conns:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("proxy", "build/redis-carp-proxy", "proxy binary")
	conns := flag.Int("conns", 10000, "idle client connections to open")
	hold := flag.Duration("hold", 0, "keep the connections open this long after measuring (for pprof)")
	flag.Parse()

	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	need := uint64(*conns) + 1000
	if uint64(lim.Cur) < need { // Cur is int64 on FreeBSD, uint64 on Linux
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", lim.Max, err)
		}
	}
	if uint64(lim.Cur) < need {
		return fmt.Errorf("RLIMIT_NOFILE hard limit %d is below the %d needed", lim.Max, need)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	c, err := testcluster.Start(ctx, testcluster.Options{Replicas: -1})
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	listen := ln.Addr().String()
	ln.Close()
	adm, _ := net.Listen("tcp", "127.0.0.1:0")
	admin := adm.Addr().String()
	adm.Close()
	proxy := exec.Command(*bin, "--listen", listen, "--cluster-seeds", c.Seeds()[0], "--admin-listen", admin,
		"--admin-pprof", "yes", "--maxclients", strconv.Itoa(*conns+100), "--log-level", "warn")
	proxy.Stderr = os.Stderr
	if err := proxy.Start(); err != nil {
		return err
	}
	defer func() { proxy.Process.Signal(syscall.SIGTERM); proxy.Wait() }()

	var warm []net.Conn
	deadline := time.Now().Add(15 * time.Second)
	for len(warm) < 50 {
		nc, err := net.Dial("tcp", listen)
		if err != nil {
			if time.Now().After(deadline) {
				return err
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err := ping(nc); err != nil {
			return err
		}
		warm = append(warm, nc)
	}
	settle()
	base, err := rss(proxy.Process.Pid)
	if err != nil {
		return err
	}
	baseGo, err := goMem(admin)
	if err != nil {
		return err
	}
	fmt.Printf("proxy RSS with %d warm-up connections: %d KiB (admin %s)\n", len(warm), base>>10, admin)
	report := func(what string) error {
		proxyGC(admin)
		time.Sleep(time.Second)
		r, err := rss(proxy.Process.Pid)
		if err != nil {
			return err
		}
		g, err := goMem(admin)
		if err != nil {
			return err
		}
		fmt.Printf("%d connections, %s: RSS %d KiB, %.1f KiB per connection (target < 10); Go heap+stacks in use %.1f KiB per connection\n",
			*conns, what, r>>10, float64(r-base)/1024/float64(*conns), float64(g-baseGo)/1024/float64(*conns))
		return nil
	}

	open := make([]net.Conn, 0, *conns)
	defer func() {
		for _, nc := range open {
			nc.Close()
		}
	}()
	for len(open) < *conns {
		nc, err := net.Dial("tcp", listen)
		if err != nil {
			return fmt.Errorf("connection %d: %w", len(open), err)
		}
		open = append(open, nc)
	}
	// Make sure the proxy accepted all of them: a PING on the last one is answered after
	// every earlier accept.
	if err := ping(open[len(open)-1]); err != nil {
		return err
	}
	settle()
	if err := report("no command sent"); err != nil {
		return err
	}

	for i, nc := range open {
		if err := ping(nc); err != nil {
			return fmt.Errorf("PING on connection %d: %w", i, err)
		}
	}
	settle()
	if err := report("right after one PING each"); err != nil {
		return err
	}
	time.Sleep(5 * time.Second) // past the proxy's 2s read-buffer release
	if err := report("idle 5s after one PING each"); err != nil {
		return err
	}
	if *hold > 0 {
		fmt.Printf("holding for %v: go tool pprof http://%s/debug/pprof/heap\n", *hold, admin)
		time.Sleep(*hold)
	}
	return nil
}

func settle() { runtime.GC(); time.Sleep(2 * time.Second) }

func ping(nc net.Conn) error {
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	defer nc.SetDeadline(time.Time{})
	if _, err := nc.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	l, err := bufio.NewReaderSize(nc, 16).ReadString('\n')
	if err != nil {
		return err
	}
	if l != "+PONG\r\n" {
		return fmt.Errorf("PING: %q", l)
	}
	return nil
}

// proxyGC makes the proxy run a garbage collection (which also shrinks goroutine stacks):
// the heap profile endpoint with gc=1 does.
func proxyGC(admin string) {
	if resp, err := http.Get("http://" + admin + "/debug/pprof/heap?gc=1"); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// goMem returns the proxy's Go heap and stack bytes in use, from its /metrics.
func goMem(admin string) (int64, error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var total float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && (f[0] == "go_memstats_heap_inuse_bytes" || f[0] == "go_memstats_stack_inuse_bytes") {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return 0, err
			}
			total += v
		}
	}
	return int64(total), sc.Err()
}

// rss returns the resident set size of pid in bytes (ps works on Linux and FreeBSD).
func rss(pid int) (int64, error) {
	out, err := exec.Command("ps", "-o", "rss=", "-p", strconv.Itoa(pid)).Output()
	if err != nil {
		return 0, fmt.Errorf("ps: %w", err)
	}
	kb, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return 0, errors.New("ps: unexpected output " + strconv.Quote(string(out)))
	}
	return kb << 10, nil
}

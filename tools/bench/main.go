// Command bench compares the proxy with direct cluster access and, optionally, with a peer
// proxy on the same cluster, on the same machine, in one run. It starts a 6-node cluster
// and the proxy (and the peer, with -peer-cmd), then runs redis-benchmark -r 100000 -d 64
// for SET, GET and MSET with -P 1 and -P 16 and -c 50 and -c 500 against every target,
// interleaved (the order rotates each round), and prints the medians, the ratios, the
// proxies' CPU-seconds per million requests and system calls per request (from
// /proc/PID/stat and /proc/PID/io), and their RSS per idle client after one command.
// Run it with `make bench [PEER=host:port PEER_CMD='…']`.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// target is something redis-benchmark runs against.
type target struct {
	name    string
	host    string
	port    string
	cluster bool                  // direct access: redis-benchmark --cluster
	tls     *testcluster.TLSFiles // redis-benchmark --tls with these files
	pid     int                   // process to measure (0: none)
}

// sample is one redis-benchmark run.
type sample struct {
	rps, p50, p99   float64
	cpuPerM, sysPer float64 // CPU-seconds per 1M requests, syscalls per request (-1: unknown)
}

type cell struct {
	test    string
	p, conc int
}

func run() error {
	bin := flag.String("proxy", "build/redis-carp-proxy", "proxy binary")
	reps := flag.Int("reps", 3, "interleaved rounds (the median is reported)")
	n1 := flag.Int("n", 100000, "requests per run with -P 1 (with -P 16: x10, MSET x4, so that each run lasts seconds)")
	tests := flag.String("tests", "set,get,mset", "redis-benchmark tests")
	concs := flag.String("clients", "50,500", "client counts (-c)")
	peer := flag.String("peer", "", "host:port of a peer proxy serving the same cluster (column 'peer')")
	peerCmd := flag.String("peer-cmd", "", "command that starts the peer; the cluster's seeds are appended (comma-separated)")
	idle := flag.Int("idle", 10000, "idle clients for the RSS measurement (0: skip)")
	cpuprofile := flag.String("cpuprofile", "", "write a 20 s CPU profile of the proxy to this file (its admin pprof endpoint)")
	proxyArgs := flag.String("proxy-args", "", "extra flags for the proxy (e.g. \"--event-loops 2\")")
	tlsDir := flag.String("tls", "", "measure TLS clients: write certificates into this directory (proxy.crt, proxy.key, proxy-ca.crt), serve tls-port, and run redis-benchmark --tls against the proxy's TLS port (column proxy) and the peer (start it with the same files); the second column is then the same proxy's plain port (plain), so proxy/plain is TLS over plain")
	flag.Parse()
	if *tlsDir != "" {
		*idle = 0 // the idle clients are plain connections
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := raiseNoFile(uint64(*idle) + 4096); err != nil {
		return err
	}

	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	c, err := testcluster.Start(startCtx, testcluster.Options{})
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()

	listen, admin := freeAddr(), freeAddr()
	args := []string{"--listen", listen, "--cluster-seeds", strings.Join(c.Seeds(), ","), "--admin-listen", admin,
		"--log-level", "warn", "--maxclients", strconv.Itoa(*idle + 1000)}
	if *cpuprofile != "" {
		args = append(args, "--admin-pprof", "yes")
	}
	var tlsFiles *testcluster.TLSFiles
	tlsListen := ""
	if *tlsDir != "" {
		if err := os.MkdirAll(*tlsDir, 0o700); err != nil {
			return err
		}
		if tlsFiles, err = testcluster.WriteTLSFiles(*tlsDir, "proxy"); err != nil {
			return err
		}
		tlsListen = freeAddr()
		_, tp, _ := net.SplitHostPort(tlsListen)
		args = append(args, "--tls-port", tp, "--tls-cert-file", tlsFiles.CertFile, "--tls-key-file", tlsFiles.KeyFile,
			"--tls-ca-cert-file", tlsFiles.CACertFile)
	}
	args = append(args, strings.Fields(*proxyArgs)...)
	proxy := exec.Command(*bin, args...)
	proxy.Stderr = os.Stderr
	proxy.SysProcAttr = testcluster.ChildProcAttr()
	if err := proxy.Start(); err != nil {
		return err
	}
	defer func() { proxy.Process.Signal(syscall.SIGTERM); proxy.Wait() }()
	if err := waitPort(listen, 15*time.Second); err != nil {
		return err
	}
	ph, pp, _ := net.SplitHostPort(listen)
	dh, dp, _ := net.SplitHostPort(c.Seeds()[0])
	targets := []target{{name: "proxy", host: ph, port: pp, pid: proxy.Process.Pid}, {name: "direct", host: dh, port: dp, cluster: true}}
	second := "direct"
	if tlsFiles != nil {
		if err := waitTLSPort(tlsListen, tlsFiles, 15*time.Second); err != nil {
			return err
		}
		second = "plain"
		th, tp, _ := net.SplitHostPort(tlsListen)
		targets = []target{{name: "proxy", host: th, port: tp, pid: proxy.Process.Pid, tls: tlsFiles},
			{name: "direct", host: ph, port: pp, pid: proxy.Process.Pid}}
	}
	if *peer != "" {
		t := target{name: "peer", tls: tlsFiles}
		t.host, t.port, _ = net.SplitHostPort(*peer)
		if *peerCmd != "" {
			f := strings.Fields(*peerCmd)
			pc := exec.Command(f[0], append(f[1:], strings.Join(c.Seeds(), ","))...)
			pc.Stdout, pc.Stderr = os.Stderr, os.Stderr
			pc.SysProcAttr = testcluster.ChildProcAttr()
			if err := pc.Start(); err != nil {
				return fmt.Errorf("peer: %w", err)
			}
			defer func() { pc.Process.Signal(syscall.SIGTERM); pc.Wait() }()
			t.pid = pc.Process.Pid
		}
		wait := waitPort(*peer, 15*time.Second)
		if tlsFiles != nil {
			wait = waitTLSPort(*peer, tlsFiles, 15*time.Second)
		}
		if err := wait; err != nil {
			return fmt.Errorf("peer: %w", err)
		}
		targets = append(targets, t)
	}

	// Idle clients first, while the processes are fresh: a heap grown by the load runs and
	// given back later would blur the growth per client.
	idleLine := ""
	if *idle > 0 {
		idleLine = fmt.Sprintf("RSS per idle client (%d clients, each after one GET):", *idle)
		for _, t := range targets {
			if t.pid == 0 {
				continue
			}
			kib, err := idleRSS(ctx, t, *idle)
			if err != nil {
				return fmt.Errorf("idle clients on %s: %w", t.name, err)
			}
			idleLine += fmt.Sprintf(" %s %.2f KiB", t.name, kib)
		}
		fmt.Fprintln(os.Stderr, "bench:", idleLine)
	}
	var cells []cell
	for _, test := range strings.Split(*tests, ",") {
		for _, p := range []int{1, 16} {
			for _, cs := range strings.Split(*concs, ",") {
				n, _ := strconv.Atoi(cs)
				cells = append(cells, cell{test, p, n})
			}
		}
	}
	var prof *exec.Cmd
	if *cpuprofile != "" {
		prof = exec.Command("curl", "-s", "-o", *cpuprofile, "http://"+admin+"/debug/pprof/profile?seconds=20")
		prof.Start()
	}
	results := map[cell]map[string][]sample{}
	for r := 0; r < *reps; r++ {
		for _, ce := range cells {
			if results[ce] == nil {
				results[ce] = map[string][]sample{}
			}
			for i := range targets {
				t := targets[(i+r)%len(targets)] // rotate the order every round
				if ctx.Err() != nil {
					return ctx.Err()
				}
				n := *n1
				if ce.p > 1 {
					// Pipelined runs last seconds too: with a run of a second, accepting
					// 500 connections and warming up weigh on the result.
					n *= 10
					if ce.test == "mset" {
						n = *n1 * 4 // ten keys per request
					}
				}
				s, err := measure(ctx, t, ce, n)
				if err != nil {
					return fmt.Errorf("%s %s -P %d -c %d: %w", t.name, ce.test, ce.p, ce.conc, err)
				}
				results[ce][t.name] = append(results[ce][t.name], s)
				fmt.Fprintf(os.Stderr, "bench: round %d %-4s -P %-2d -c %-3d %-6s %9.0f req/s p50 %.3f p99 %.3f ms cpu %.2f s/1M syscalls %.2f/req\n",
					r+1, ce.test, ce.p, ce.conc, t.name, s.rps, s.p50, s.p99, s.cpuPerM, s.sysPer)
			}
		}
	}
	if prof != nil {
		prof.Wait()
	}
	hasPeer := len(targets) > 2
	if tlsFiles != nil {
		fmt.Printf("\nTLS clients: proxy and peer are served over TLS; %q is the same proxy's plain port\n", second)
	}
	fmt.Printf("\nredis-benchmark -r 100000 -d 64, median of %d interleaved rounds; ratios are proxy/%s and proxy/peer\n", *reps, second)
	if hasPeer {
		fmt.Printf("of the medians; \"paired\": the median of the ratios within each round (both ran minutes\n" +
			"apart under the same conditions), with the rounds in which the proxy did at least as well\n")
	}
	fmt.Println()
	head := fmt.Sprintf("| test | -P | -c | proxy req/s | %[1]s req/s | proxy/%[1]s |", second)
	sep := "|---|---|---|---|---|---|"
	if hasPeer {
		head += " peer req/s | proxy/peer | req/s paired |"
		sep += "---|---|---|"
	}
	head += " p99 ms proxy | p99 " + second + " |"
	sep += "---|---|"
	if hasPeer {
		head += " p99 peer | p99 paired |"
		sep += "---|---|"
	}
	head += " CPU-s/1M proxy | syscalls/req proxy |"
	sep += "---|---|"
	if hasPeer {
		head += " CPU-s/1M peer | syscalls/req peer | CPU paired |"
		sep += "---|---|---|"
	}
	fmt.Println(head)
	fmt.Println(sep)
	for _, ce := range cells {
		pr, dr := median(results[ce]["proxy"]), median(results[ce]["direct"])
		line := fmt.Sprintf("| %s | %d | %d | %.0f | %.0f | %.2f |", strings.ToUpper(ce.test), ce.p, ce.conc, pr.rps, dr.rps, pr.rps/dr.rps)
		var er sample
		ps, es := results[ce]["proxy"], results[ce]["peer"]
		if hasPeer {
			er = median(es)
			line += fmt.Sprintf(" %.0f | %.2f | %s |", er.rps, pr.rps/er.rps,
				paired(ps, es, func(s sample) float64 { return s.rps }, true))
		}
		line += fmt.Sprintf(" %.3f | %.3f |", pr.p99, dr.p99)
		if hasPeer {
			line += fmt.Sprintf(" %.3f | %s |", er.p99, paired(ps, es, func(s sample) float64 { return s.p99 }, false))
		}
		line += fmt.Sprintf(" %s | %s |", num(pr.cpuPerM), num(pr.sysPer))
		if hasPeer {
			line += fmt.Sprintf(" %s | %s | %s |", num(er.cpuPerM), num(er.sysPer),
				paired(ps, es, func(s sample) float64 { return s.cpuPerM }, false))
		}
		fmt.Println(line)
	}
	if idleLine != "" {
		fmt.Printf("\n%s\n", idleLine)
	}
	return nil
}

func num(v float64) string {
	if v < 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

// measure runs one redis-benchmark against t and reads t's CPU time and system calls
// around it.
func measure(ctx context.Context, t target, ce cell, n int) (sample, error) {
	a := []string{"-t", ce.test, "-c", strconv.Itoa(ce.conc), "-r", "100000", "-d", "64", "-n", strconv.Itoa(n),
		"-P", strconv.Itoa(ce.p), "--csv", "-h", t.host, "-p", t.port}
	if t.cluster {
		a = append(a, "--cluster")
	}
	if t.tls != nil {
		a = append(a, "--tls", "--cert", t.tls.CertFile, "--key", t.tls.KeyFile, "--cacert", t.tls.CACertFile)
	}
	cpu0, sys0 := procCounters(t.pid)
	s, err := benchmark(ctx, a)
	if err != nil {
		return s, err
	}
	cpu1, sys1 := procCounters(t.pid)
	s.cpuPerM, s.sysPer = -1, -1
	if t.pid != 0 && cpu0 >= 0 && cpu1 >= 0 {
		s.cpuPerM = (cpu1 - cpu0) / float64(n) * 1e6
		s.sysPer = (sys1 - sys0) / float64(n)
	}
	return s, nil
}

// clkTck is the unit of utime and stime in /proc/PID/stat (USER_HZ: 100 on Linux).
const clkTck = 100

// procCounters returns the CPU seconds (user+system) and system calls (reads+writes)
// of pid so far, or -1 when they cannot be read.
func procCounters(pid int) (cpu, syscalls float64) {
	if pid == 0 {
		return -1, -1
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1, -1
	}
	// Fields after the command name (which may contain spaces) start after the last ')'.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(f) < 13 {
		return -1, -1
	}
	ut, _ := strconv.ParseFloat(f[11], 64) // utime is field 14 of stat, 12th after the name
	st, _ := strconv.ParseFloat(f[12], 64)
	cpu = (ut + st) / clkTck
	io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return cpu, -1
	}
	for _, line := range strings.Split(string(io), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if ok && (k == "syscr" || k == "syscw") {
			x, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			syscalls += x
		}
	}
	return cpu, syscalls
}

// idleRSS opens n clients to t, sends one GET on each, and returns t's RSS growth per client.
func idleRSS(ctx context.Context, t target, n int) (float64, error) {
	addr := net.JoinHostPort(t.host, t.port)
	before, err := rssKiB(t.pid)
	if err != nil {
		return 0, err
	}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	cmd := []byte("*2\r\n$3\r\nGET\r\n$8\r\nidle:key\r\n")
	for len(conns) < n {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return 0, err
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(cmd); err != nil {
			return 0, err
		}
		if _, err := bufio.NewReaderSize(c, 64).ReadString('\n'); err != nil {
			return 0, fmt.Errorf("client %d: %w", len(conns), err)
		}
	}
	time.Sleep(2 * time.Second) // let the proxy settle (released buffers, GC)
	after, err := rssKiB(t.pid)
	if err != nil {
		return 0, err
	}
	return float64(after-before) / float64(n), nil
}

func rssKiB(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, errors.New("no VmRSS")
}

func raiseNoFile(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if uint64(lim.Cur) >= need {
		return nil
	}
	lim.Cur = lim.Max
	// Cur and Max are int64 on FreeBSD and uint64 on Linux: grow in their own type. Root
	// may raise the hard limit.
	for uint64(lim.Max) < need {
		lim.Max += 1024
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", need, err)
	}
	return nil
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// paired is the median of the per-round ratios f(proxy)/f(peer) (samples of the same index
// ran in the same round), and in how many rounds the proxy was at least as good: a higher
// value if higherBetter, else a lower one.
func paired(proxy, peer []sample, f func(sample) float64, higherBetter bool) string {
	var ratios []float64
	won := 0
	for i := 0; i < len(proxy) && i < len(peer); i++ {
		a, b := f(proxy[i]), f(peer[i])
		if a <= 0 || b <= 0 {
			continue
		}
		ratios = append(ratios, a/b)
		if higherBetter && a >= b || !higherBetter && a <= b {
			won++
		}
	}
	if len(ratios) == 0 {
		return "–"
	}
	sort.Float64s(ratios)
	return fmt.Sprintf("%.2f (%d/%d)", ratios[len(ratios)/2], won, len(ratios))
}

func median(rs []sample) sample {
	if len(rs) == 0 {
		return sample{cpuPerM: -1, sysPer: -1}
	}
	pick := func(f func(sample) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	return sample{
		rps: pick(func(r sample) float64 { return r.rps }), p50: pick(func(r sample) float64 { return r.p50 }),
		p99: pick(func(r sample) float64 { return r.p99 }), cpuPerM: pick(func(r sample) float64 { return r.cpuPerM }),
		sysPer: pick(func(r sample) float64 { return r.sysPer }),
	}
}

// benchmark runs redis-benchmark with a time bound and parses its CSV line.
func benchmark(ctx context.Context, args []string) (sample, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-benchmark", args...).Output()
	if err != nil {
		return sample{}, fmt.Errorf("redis-benchmark: %w", err)
	}
	// With --cluster, redis-benchmark prints the masters before the CSV header.
	text := string(out)
	if i := strings.Index(text, "\"test\","); i >= 0 {
		text = text[i:]
	}
	recs, err := csv.NewReader(strings.NewReader(text)).ReadAll()
	if err != nil || len(recs) < 2 || len(recs[1]) < 7 {
		return sample{}, fmt.Errorf("unexpected redis-benchmark output: %q", out)
	}
	f := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
	return sample{rps: f(recs[1][1]), p50: f(recs[1][4]), p99: f(recs[1][6])}, nil
}

// waitTLSPort waits until addr answers PING over TLS with the files' certificate.
func waitTLSPort(addr string, f *testcluster.TLSFiles, d time.Duration) error {
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, cfg)
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			c.Write([]byte("PING\r\n"))
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil && strings.HasPrefix(line, "+PONG") {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not answering PING over TLS after %v", addr, d)
}

func waitPort(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			c.Write([]byte("PING\r\n"))
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil && strings.HasPrefix(line, "+PONG") {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not answering PING after %v", addr, d)
}

// Command bench compares the proxy with direct cluster access and, optionally, with a peer
// proxy on the same cluster, on the same machine, in one run. It starts a 6-node cluster
// and the proxy (and the peer, with -peer-cmd), then runs redis-benchmark -r 100000 -d 64
// for SET, GET and MSET with -P 1 and -P 16 and -c 50 and -c 500, and SET and GET with the
// larger values of -sizes (4 KiB and 64 KiB) with -P 1 and -P 16 and -c 50, against every
// target, interleaved (the order rotates each round), and prints the medians, the ratios, the
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
	"io"
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
	test          string
	p, conc, size int // size: the value size (-d)
}

// options are the command's flags.
type options struct {
	bin               string
	reps, n1, idle    int
	tests, concs      string
	sizes             string
	peer, peerCmd     string
	cpuprofile        string
	profileCell       string
	proxyArgs, tlsDir string
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.bin, "proxy", "build/redis-carp-proxy", "proxy binary")
	flag.IntVar(&o.reps, "reps", 3, "interleaved rounds (the median is reported)")
	flag.IntVar(&o.n1, "n", 100000, "requests per run with -P 1 (with -P 16: x10, MSET x4, so that each run lasts seconds)")
	flag.StringVar(&o.tests, "tests", "set,get,mset", "redis-benchmark tests")
	flag.StringVar(&o.concs, "clients", "50,500", "client counts (-c)")
	flag.StringVar(&o.sizes, "sizes", "64,4096,65536", "value sizes (-d): the first for every test and client count, the others for SET and GET with the first client count")
	flag.StringVar(&o.peer, "peer", "", "host:port of a peer proxy serving the same cluster (column 'peer')")
	flag.StringVar(&o.peerCmd, "peer-cmd", "", "command that starts the peer; the cluster's seeds are appended (comma-separated)")
	flag.IntVar(&o.idle, "idle", 10000, "idle clients for the RSS measurement (0: skip)")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a 20 s CPU profile of the proxy to this file (its admin pprof endpoint)")
	flag.StringVar(&o.profileCell, "profile-cell", "", "with -cpuprofile: start the profile at the proxy's first run of this cell, test/P/size (e.g. get/16/4096); default: at the first run")
	flag.StringVar(&o.proxyArgs, "proxy-args", "", "extra flags for the proxy (e.g. \"--event-loops 2\")")
	flag.StringVar(&o.tlsDir, "tls", "", "measure TLS clients: write certificates into this directory (proxy.crt, proxy.key, proxy-ca.crt), serve tls-port, and run redis-benchmark --tls against the proxy's TLS port (column proxy) and the peer (start it with the same files); the second column is then the same proxy's plain port (plain), so proxy/plain is TLS over plain")
	flag.Parse()
	if o.tlsDir != "" {
		o.idle = 0 // the idle clients are plain connections
	}
	return o
}

// run starts the cluster, the proxy and the peer, measures the idle clients' RSS, runs
// the interleaved rounds and prints the table.
func run() error {
	o := parseFlags()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := raiseNoFile(uint64(o.idle) + 4096); err != nil {
		return err
	}

	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	c, err := testcluster.Start(startCtx, testcluster.Options{})
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()

	p, err := startProxy(o, c.Seeds())
	if err != nil {
		return err
	}
	defer p.stop()
	targets, second, err := p.targets(c.Seeds()[0])
	if err != nil {
		return err
	}
	if o.peer != "" {
		t, stopPeer, err := startPeer(o, c.Seeds(), p.tlsFiles)
		if err != nil {
			return fmt.Errorf("peer: %w", err)
		}
		defer stopPeer()
		targets = append(targets, t)
	}

	// Idle clients first, while the processes are fresh: a heap grown by the load runs and
	// given back later would blur the growth per client.
	idleLine, err := idleClients(ctx, targets, o.idle)
	if err != nil {
		return err
	}
	cells, err := cellsOf(o.tests, o.concs, o.sizes)
	if err != nil {
		return err
	}
	var prof *exec.Cmd
	startProf := func(ce cell, t target) {
		if prof != nil || o.cpuprofile == "" || t.name != "proxy" {
			return
		}
		if o.profileCell != "" && o.profileCell != fmt.Sprintf("%s/%d/%d", ce.test, ce.p, ce.size) {
			return
		}
		prof = exec.Command("curl", "-s", "-o", o.cpuprofile, "http://"+p.admin+"/debug/pprof/profile?seconds=20")
		if err := prof.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: cpu profile:", err)
		}
	}
	res, err := rounds(ctx, targets, cells, o.reps, o.n1, startProf)
	if err != nil {
		return err
	}
	if prof != nil {
		prof.Wait()
	}
	printReport(os.Stdout, res, reportLayout{cells: cells, reps: o.reps, second: second, hasPeer: len(targets) > 2, tls: p.tlsFiles != nil})
	if idleLine != "" {
		fmt.Printf("\n%s\n", idleLine)
	}
	return nil
}

// proxyProc is the proxy under test, started by startProxy.
type proxyProc struct {
	cmd           *exec.Cmd
	listen, admin string
	tlsListen     string                // with -tls: its TLS port
	tlsFiles      *testcluster.TLSFiles // with -tls: its certificate files
}

// startProxy starts the proxy binary on the cluster's seeds (with its pprof endpoint for
// -cpuprofile, a TLS port with fresh certificates for -tls, and -proxy-args) and waits
// until it answers PING.
func startProxy(o options, seeds []string) (*proxyProc, error) {
	p := &proxyProc{listen: freeAddr(), admin: freeAddr()}
	args := []string{"--listen", p.listen, "--cluster-seeds", strings.Join(seeds, ","), "--admin-listen", p.admin,
		"--log-level", "warn", "--maxclients", strconv.Itoa(o.idle + 1000)}
	if o.cpuprofile != "" {
		args = append(args, "--admin-pprof", "yes")
	}
	if o.tlsDir != "" {
		if err := os.MkdirAll(o.tlsDir, 0o700); err != nil {
			return nil, err
		}
		var err error
		if p.tlsFiles, err = testcluster.WriteTLSFiles(o.tlsDir, "proxy"); err != nil {
			return nil, err
		}
		p.tlsListen = freeAddr()
		_, tp, _ := net.SplitHostPort(p.tlsListen)
		args = append(args, "--tls-port", tp, "--tls-cert-file", p.tlsFiles.CertFile, "--tls-key-file", p.tlsFiles.KeyFile,
			"--tls-ca-cert-file", p.tlsFiles.CACertFile)
	}
	args = append(args, strings.Fields(o.proxyArgs)...)
	p.cmd = exec.Command(o.bin, args...)
	p.cmd.Stderr = os.Stderr
	p.cmd.SysProcAttr = testcluster.ChildProcAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	if err := waitPort(p.listen, 15*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// stop ends the proxy and waits for it.
func (p *proxyProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
}

// targets are the proxy and what it is compared with, and that column's name: the
// cluster directly at seed ("direct"), or with -tls the proxy's TLS port compared with its
// plain port ("plain"; the target keeps the name "direct"), once the TLS port answers.
func (p *proxyProc) targets(seed string) ([]target, string, error) {
	ph, pp, _ := net.SplitHostPort(p.listen)
	if p.tlsFiles == nil {
		dh, dp, _ := net.SplitHostPort(seed)
		return []target{{name: "proxy", host: ph, port: pp, pid: p.cmd.Process.Pid}, {name: "direct", host: dh, port: dp, cluster: true}}, "direct", nil
	}
	if err := waitTLSPort(p.tlsListen, p.tlsFiles, 15*time.Second); err != nil {
		return nil, "", err
	}
	th, tp, _ := net.SplitHostPort(p.tlsListen)
	return []target{{name: "proxy", host: th, port: tp, pid: p.cmd.Process.Pid, tls: p.tlsFiles},
		{name: "direct", host: ph, port: pp, pid: p.cmd.Process.Pid}}, "plain", nil
}

// startPeer starts the peer proxy with -peer-cmd (the seeds appended), if given, and
// waits until -peer answers PING (over TLS with -tls). The peer is measured when this
// started it. stop ends what it started; on error nothing is left running.
func startPeer(o options, seeds []string, tlsFiles *testcluster.TLSFiles) (t target, stop func(), err error) {
	t = target{name: "peer", tls: tlsFiles}
	t.host, t.port, _ = net.SplitHostPort(o.peer)
	stop = func() {}
	if o.peerCmd != "" {
		f := strings.Fields(o.peerCmd)
		pc := exec.Command(f[0], append(f[1:], strings.Join(seeds, ","))...)
		pc.Stdout, pc.Stderr = os.Stderr, os.Stderr
		pc.SysProcAttr = testcluster.ChildProcAttr()
		if err := pc.Start(); err != nil {
			return target{}, nil, err
		}
		stop = func() { pc.Process.Signal(syscall.SIGTERM); pc.Wait() }
		t.pid = pc.Process.Pid
	}
	wait := waitPort(o.peer, 15*time.Second)
	if tlsFiles != nil {
		wait = waitTLSPort(o.peer, tlsFiles, 15*time.Second)
	}
	if wait != nil {
		stop()
		return target{}, nil, wait
	}
	return t, stop, nil
}

// idleClients measures the RSS per idle client of every target with a process (n
// clients each; none when n is 0) and returns the report's line, also logged.
func idleClients(ctx context.Context, targets []target, n int) (string, error) {
	if n <= 0 {
		return "", nil
	}
	line := fmt.Sprintf("RSS per idle client (%d clients, each after one GET):", n)
	for _, t := range targets {
		if t.pid == 0 {
			continue
		}
		kib, err := idleRSS(ctx, t, n)
		if err != nil {
			return "", fmt.Errorf("idle clients on %s: %w", t.name, err)
		}
		line += fmt.Sprintf(" %s %.2f KiB", t.name, kib)
	}
	fmt.Fprintln(os.Stderr, "bench:", line)
	return line, nil
}

// cellsOf is every combination of a test, -P 1 and 16, and a client count with the first
// value size, in the order of the table, followed by SET and GET (those of tests) with -P 1
// and 16 and the first client count for each further value size.
func cellsOf(tests, concs, sizes string) ([]cell, error) {
	var ss []int
	for _, f := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-sizes: %q is not a value size in bytes", f)
		}
		ss = append(ss, n)
	}
	var cs []int
	for _, f := range strings.Split(concs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-clients: %q is not a client count", f)
		}
		cs = append(cs, n)
	}
	var cells []cell
	for _, test := range strings.Split(tests, ",") {
		for _, p := range []int{1, 16} {
			for _, n := range cs {
				cells = append(cells, cell{test, p, n, ss[0]})
			}
		}
	}
	for _, size := range ss[1:] {
		for _, test := range strings.Split(tests, ",") {
			if test != "set" && test != "get" {
				continue
			}
			for _, p := range []int{1, 16} {
				cells = append(cells, cell{test, p, cs[0], size})
			}
		}
	}
	return cells, nil
}

// results are the samples of every cell by target name, one per round in round order.
type results map[cell]map[string][]sample

// rounds runs every cell against every target reps times, the order of the targets
// rotating every round, and logs each sample.
func rounds(ctx context.Context, targets []target, cells []cell, reps, n1 int, before func(cell, target)) (results, error) {
	res := results{}
	for r := 0; r < reps; r++ {
		for _, ce := range cells {
			if res[ce] == nil {
				res[ce] = map[string][]sample{}
			}
			for i := range targets {
				t := targets[(i+r)%len(targets)] // rotate the order every round
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				n := requests(ce, n1)
				before(ce, t)
				s, err := measure(ctx, t, ce, n)
				if err != nil {
					return nil, fmt.Errorf("%s %s -P %d -c %d -d %d: %w", t.name, ce.test, ce.p, ce.conc, ce.size, err)
				}
				res[ce][t.name] = append(res[ce][t.name], s)
				fmt.Fprintf(os.Stderr, "bench: round %d %-4s -P %-2d -c %-3d -d %-5d %-6s %9.0f req/s p50 %.3f p99 %.3f ms cpu %.2f s/1M syscalls %.2f/req\n",
					r+1, ce.test, ce.p, ce.conc, ce.size, t.name, s.rps, s.p50, s.p99, s.cpuPerM, s.sysPer)
			}
		}
	}
	return res, nil
}

// requests is the number of requests of one run of ce: n1 unpipelined, ten times that
// pipelined (MSET, with ten keys per request, four times), and fewer for values above
// 4 KiB, in proportion, so that a run moves about as many bytes as one of 4 KiB.
func requests(ce cell, n1 int) int {
	n := n1
	if ce.p > 1 {
		// Pipelined runs last seconds too: with a run of a second, accepting 500 connections
		// and warming up weigh on the result.
		n = n1 * 10
		if ce.test == "mset" {
			n = n1 * 4 // ten keys per request
		}
	}
	if ce.size > 4096 {
		n = max(n*4096/ce.size, 1000)
	}
	return n
}

// keyspace is redis-benchmark's -r for values of size bytes: 100,000 keys, fewer for
// large values so that the cluster holds about 400 MB of them (6,400 keys of 64 KiB): with
// gigabytes, the nodes swap and their replicas resynchronise, and a node stalls for
// seconds in the middle of a run.
func keyspace(size int) int {
	return min(100000, max(400<<20/size, 1000))
}

// reportLayout is what the table's shape depends on.
type reportLayout struct {
	cells   []cell
	reps    int
	second  string // the second column: "direct", or "plain" with -tls
	hasPeer bool
	tls     bool
}

// printReport prints the heading and the table of medians, ratios, p99, CPU and system
// calls, with the peer's and the paired columns when there is a peer.
func printReport(w io.Writer, res results, l reportLayout) {
	if l.tls {
		fmt.Fprintf(w, "\nTLS clients: proxy and peer are served over TLS; %q is the same proxy's plain port\n", l.second)
	}
	fmt.Fprintf(w, "\nredis-benchmark -r 100000 (fewer keys for values over 4 KiB: about 400 MB) (-d: value size), median of %d interleaved rounds; ratios are proxy/%s and proxy/peer\n", l.reps, l.second)
	if l.hasPeer {
		fmt.Fprintf(w, "of the medians; \"paired\": the median of the ratios within each round (both ran minutes\n"+
			"apart under the same conditions), with the rounds in which the proxy did at least as well\n")
	}
	fmt.Fprintln(w)
	head, sep := tableHead(l.second, l.hasPeer)
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, sep)
	for _, ce := range l.cells {
		fmt.Fprintln(w, tableRow(ce, res[ce], l.hasPeer))
	}
}

// tableHead is the table's header line and separator line.
func tableHead(second string, hasPeer bool) (head, sep string) {
	head = fmt.Sprintf("| test | -P | -c | -d | proxy req/s | %[1]s req/s | proxy/%[1]s |", second)
	sep = "|---|---|---|---|---|---|---|"
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
	return head, sep
}

// tableRow is the table's line for one cell, from its samples by target name.
func tableRow(ce cell, bySample map[string][]sample, hasPeer bool) string {
	pr, dr := median(bySample["proxy"]), median(bySample["direct"])
	line := fmt.Sprintf("| %s | %d | %d | %d | %.0f | %.0f | %.2f |", strings.ToUpper(ce.test), ce.p, ce.conc, ce.size, pr.rps, dr.rps, pr.rps/dr.rps)
	var er sample
	ps, es := bySample["proxy"], bySample["peer"]
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
	return line
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
	a := []string{"-t", ce.test, "-c", strconv.Itoa(ce.conc), "-r", strconv.Itoa(keyspace(ce.size)), "-d", strconv.Itoa(ce.size), "-n", strconv.Itoa(n),
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
	return waitPING(addr, d, func() (net.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, cfg)
	})
}

// waitPort waits until addr answers PING.
func waitPort(addr string, d time.Duration) error {
	return waitPING(addr, d, func() (net.Conn, error) { return net.DialTimeout("tcp", addr, time.Second) })
}

// waitPING dials with dial until a connection answers PING with +PONG, for at most d.
func waitPING(addr string, d time.Duration, dial func() (net.Conn, error)) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c, err := dial()
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

// Command bench compares the proxy with direct cluster access on the same machine: it starts
// a 6-node cluster and the proxy, runs redis-benchmark for SET and GET (-c 50 -r 100000
// -d 64) with -P 1 and -P 16 through the proxy and directly (--cluster), interleaved and
// repeated, and prints medians and the proxy/direct ratios. Run it with `make bench`.
package main

import (
	"context"
	"encoding/csv"
	"flag"
	"fmt"
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

type result struct{ rps, p50, p99 float64 }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("proxy", "build/redis-carp-proxy", "proxy binary")
	reps := flag.Int("reps", 3, "repetitions of each run (the median is reported)")
	n1 := flag.Int("n", 100000, "requests per run with -P 1 (x4 with -P 16)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the proxy to this file (its admin pprof endpoint)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	c, err := testcluster.Start(startCtx, testcluster.Options{})
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()

	const listen = "127.0.0.1:16399"
	args := []string{"--listen", listen, "--cluster-seeds", strings.Join(c.Seeds(), ","), "--admin-listen", "127.0.0.1:16400", "--log-level", "warn"}
	if *cpuprofile != "" {
		args = append(args, "--admin-pprof", "yes")
	}
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
	direct := c.Seeds()[0]
	dh, dp, _ := strings.Cut(direct, ":")
	ph, pp, _ := strings.Cut(listen, ":")

	type key struct {
		test string
		p    int
		via  string
	}
	results := map[key][]result{}
	var prof *exec.Cmd
	if *cpuprofile != "" {
		prof = exec.Command("curl", "-s", "-o", *cpuprofile, "http://127.0.0.1:16400/debug/pprof/profile?seconds=20")
		prof.Start()
	}
	for r := 0; r < *reps; r++ {
		for _, test := range []string{"set", "get"} {
			for _, p := range []int{1, 16} {
				order := []string{"proxy", "direct"}
				if r%2 == 1 {
					order = []string{"direct", "proxy"}
				}
				for _, via := range order {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					n := *n1
					if p > 1 {
						n *= 4
					}
					a := []string{"-t", test, "-c", "50", "-r", "100000", "-d", "64", "-n", strconv.Itoa(n), "-P", strconv.Itoa(p), "--csv"}
					if via == "proxy" {
						a = append(a, "-h", ph, "-p", pp)
					} else {
						a = append(a, "-h", dh, "-p", dp, "--cluster")
					}
					res, err := benchmark(ctx, a)
					if err != nil {
						return fmt.Errorf("%s %s -P %d: %w", via, test, p, err)
					}
					results[key{test, p, via}] = append(results[key{test, p, via}], res)
					fmt.Fprintf(os.Stderr, "bench: rep %d %-3s -P %-2d %-6s %9.0f req/s p50 %.3f ms p99 %.3f ms\n", r+1, test, p, via, res.rps, res.p50, res.p99)
				}
			}
		}
	}
	if prof != nil {
		prof.Wait()
	}
	fmt.Printf("\nredis-benchmark -c 50 -r 100000 -d 64, median of %d interleaved runs, proxy vs direct (--cluster)\n\n", *reps)
	fmt.Printf("| test | -P | proxy req/s | direct req/s | ratio | proxy p50 ms | direct p50 ms | proxy p99 ms | direct p99 ms | p99 diff ms |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, test := range []string{"set", "get"} {
		for _, p := range []int{1, 16} {
			pr := median(results[key{test, p, "proxy"}])
			dr := median(results[key{test, p, "direct"}])
			fmt.Printf("| %s | %d | %.0f | %.0f | %.2f | %.3f | %.3f | %.3f | %.3f | %+.3f |\n",
				strings.ToUpper(test), p, pr.rps, dr.rps, pr.rps/dr.rps, pr.p50, dr.p50, pr.p99, dr.p99, pr.p99-dr.p99)
		}
	}
	return nil
}

func median(rs []result) result {
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	return result{pick(func(r result) float64 { return r.rps }), pick(func(r result) float64 { return r.p50 }), pick(func(r result) float64 { return r.p99 })}
}

// benchmark runs redis-benchmark with a time bound and parses its CSV line.
func benchmark(ctx context.Context, args []string) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-benchmark", args...).Output()
	if err != nil {
		return result{}, fmt.Errorf("redis-benchmark: %w", err)
	}
	// With --cluster, redis-benchmark prints the masters before the CSV header.
	text := string(out)
	if i := strings.Index(text, "\"test\","); i >= 0 {
		text = text[i:]
	}
	recs, err := csv.NewReader(strings.NewReader(text)).ReadAll()
	if err != nil || len(recs) < 2 || len(recs[1]) < 7 {
		return result{}, fmt.Errorf("unexpected redis-benchmark output: %q", out)
	}
	f := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
	return result{rps: f(recs[1][1]), p50: f(recs[1][4]), p99: f(recs[1][6])}, nil
}

func waitPort(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		out, err := exec.Command("redis-cli", "-h", strings.Split(addr, ":")[0], "-p", strings.Split(addr, ":")[1], "ping").Output()
		if err == nil && strings.TrimSpace(string(out)) == "PONG" {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("proxy on %s not answering after %v", addr, d)
}

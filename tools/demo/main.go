// Command demo starts a local 6-node Redis Cluster on loopback and the proxy in front of it
// on 127.0.0.1:6379 (static mode: always serving), until Ctrl-C. Run it with `make demo`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("proxy", "build/redis-carp-proxy", "proxy binary")
	listen := flag.String("listen", "127.0.0.1:6379", "proxy listen address")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Println("demo: starting a 6-node Redis Cluster (3 masters, 3 replicas) on loopback …")
	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	c, err := testcluster.Start(startCtx, testcluster.Options{Logf: func(f string, a ...any) { fmt.Printf("demo: "+f+"\n", a...) }})
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()

	cmd := exec.Command(*bin, "--listen", *listen, "--cluster-seeds", strings.Join(c.Seeds(), ","), "--admin-listen", "127.0.0.1:9479")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// Its own process group: Ctrl-C reaches only the demo, which stops the proxy with
	// SIGTERM (a graceful stop); the parent-death signal covers a killed demo.
	cmd.SysProcAttr = testcluster.ChildProcAttr()
	if cmd.SysProcAttr != nil {
		cmd.SysProcAttr.Setpgid = true
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start proxy: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	host, port, _ := strings.Cut(*listen, ":")
	fmt.Printf(`
demo: the cluster nodes are %s
demo: the proxy serves them as one Redis on %s (metrics on http://127.0.0.1:9479/metrics)

    redis-cli -h %s -p %s set hello world
    redis-cli -h %s -p %s get hello
    redis-benchmark -h %s -p %s -t set,get -q

demo: press Ctrl-C to stop everything.
`, strings.Join(c.Seeds(), " "), *listen, host, port, host, port, host, port)

	select {
	case <-ctx.Done():
		fmt.Println("\ndemo: stopping the proxy and the cluster …")
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		return nil
	case err := <-exited:
		if err == nil {
			err = errors.New("proxy exited")
		}
		return fmt.Errorf("proxy: %w", err)
	}
}

// Command redis-carp-proxy is a Redis Cluster proxy that serves on a CARP virtual IP while
// its host is CARP MASTER. Without a subcommand it runs the daemon; subcommands set up the
// host, pf and the Redis side.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// subcommands maps the first argument to its implementation; args exclude the subcommand.
var subcommands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{
	"allow":        runAllow,
	"check-config": runCheckConfig,
	"cluster":      runCluster,
	"redis":        runRedis,
	"pf":           runPF,
	"setup":        runSetup,
	"version":      runVersion,
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "redis-carp-proxy:", err)
		}
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 {
		if f, ok := subcommands[args[0]]; ok {
			return f(ctx, args[1:], stdout, stderr)
		}
	}
	return runDaemon(ctx, args, stderr)
}

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

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr, cmdrun.Exec{}); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "redis-carp-proxy:", err)
		}
		os.Exit(1)
	}
}

// run runs the subcommand named by args[0], or the daemon. runner runs the external tools
// of the subcommands that change the host.
func run(args []string, stdout, stderr io.Writer, runner cmdrun.Runner) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 {
		if f, ok := subcommands(runner)[args[0]]; ok {
			return f(ctx, args[1:], stdout, stderr)
		}
	}
	return runDaemon(ctx, args, stderr)
}

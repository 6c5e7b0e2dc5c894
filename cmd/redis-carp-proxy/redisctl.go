package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/clusteradmin"
	"github.com/redis-carp-proxy/redis-carp-proxy/redissetup"
)

// runRedis runs `redis init`: the Redis side of one host.
func runRedis(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprintln(stderr, "usage: redis-carp-proxy redis init --ports 7000,7001 --bind ADDR [--root DIR] [--dry-run] [--flavor redis|valkey] [--default-conf keep|remove] [--node-timeout 5s] [--password-file FILE | --no-auth]")
		return errors.New("redis: unknown or missing subcommand (want init)")
	}
	fs := flag.NewFlagSet("redis init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ports := fs.String("ports", "", "instance ports, comma separated (one rc profile each), e.g. 7000,7001")
	bind := fs.String("bind", "", "this host's physical address (never the VIP)")
	root := fs.String("root", "/", "write below this directory instead of /")
	dryRun := fs.Bool("dry-run", false, "print a unified diff of every change, write nothing")
	flavor := fs.String("flavor", "redis", "server package: redis or valkey")
	defConf := fs.String("default-conf", "", "what to do with an existing default redis.conf/valkey.conf: keep or remove (moved to a backup)")
	passFile := fs.String("password-file", redissetup.DefaultPassFile, "the cluster password file (mode 0600; created with a random password if missing, then copied to every other host)")
	noAuth := fs.Bool("no-auth", false, "write instances without a password (only pf protects them)")
	nodeTimeout := fs.Duration("node-timeout", 5*time.Second, "cluster-node-timeout of the instances")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("redis init: unexpected argument %q", fs.Arg(0))
	}
	var ps []int
	for _, f := range strings.Split(*ports, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("redis init: --ports: %q is not a port", f)
		}
		ps = append(ps, p)
	}
	return redissetup.Init(ctx, redissetup.Options{Ports: ps, Bind: *bind, Root: *root, DryRun: *dryRun,
		Flavor: *flavor, DefaultConf: *defConf, NodeTimeout: *nodeTimeout, Out: stdout,
		PassFile: *passFile, NoAuth: *noAuth})
}

// quietRedisLogger drops go-redis's own log lines: the cluster commands report every
// error themselves.
type quietRedisLogger struct{}

func (quietRedisLogger) Printf(context.Context, string, ...any) {}

// runCluster runs `cluster create|check|reset`.
func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := func() {
		fmt.Fprintln(stderr, `usage: redis-carp-proxy cluster create HOST:PORT... [--replicas 1] [--timeout 60s]
       redis-carp-proxy cluster check HOST:PORT
       redis-carp-proxy cluster reset HOST:PORT... --yes [--force]`)
	}
	if len(args) == 0 {
		usage()
		return errors.New("cluster: missing subcommand (create, check or reset)")
	}
	redis.SetLogger(quietRedisLogger{})
	fs := flag.NewFlagSet("cluster "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	passFile := fs.String("password-file", "", "file holding the nodes' password (redis init's; default "+redissetup.DefaultPassFile+" when it exists)")
	password := func() (string, error) {
		path := *passFile
		if path == "" {
			if _, err := os.Stat(redissetup.DefaultPassFile); err != nil {
				return "", nil
			}
			path = redissetup.DefaultPassFile
		}
		return redissetup.ReadPassFile(path)
	}
	switch args[0] {
	case "create":
		replicas := fs.Int("replicas", 1, "replicas per master (0: none)")
		timeout := fs.Duration("timeout", 60*time.Second, "bound of each wait (nodes meeting, convergence)")
		nodes, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return err
		}
		r := *replicas
		if r == 0 {
			r = -1 // CreateOptions: 0 means the default (1), negative means none
		}
		pw, err := password()
		if err != nil {
			return err
		}
		return clusteradmin.Create(ctx, clusteradmin.CreateOptions{Nodes: nodes, Replicas: r, Timeout: *timeout, Out: stdout, Password: pw})
	case "check":
		seeds, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return err
		}
		if len(seeds) != 1 {
			return fmt.Errorf("cluster check: want exactly one HOST:PORT of any node, got %d", len(seeds))
		}
		pw, err := password()
		if err != nil {
			return err
		}
		ps, err := clusteradmin.Check(ctx, clusteradmin.CheckOptions{Seed: seeds[0], Out: stdout, Password: pw})
		if err != nil {
			return err
		}
		if len(ps) > 0 {
			// Check printed them; the exit status says there were some.
			return fmt.Errorf("cluster: check found problems: %d problem(s)", len(ps))
		}
		return nil
	case "reset":
		yes := fs.Bool("yes", false, "really reset the nodes")
		force := fs.Bool("force", false, "also reset nodes holding keys (the keys are deleted)")
		nodes, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return err
		}
		pw, err := password()
		if err != nil {
			return err
		}
		return clusteradmin.Reset(ctx, clusteradmin.ResetOptions{Nodes: nodes, Yes: *yes, Force: *force, Out: stdout, Password: pw})
	default:
		usage()
		return fmt.Errorf("cluster: unknown subcommand %q", args[0])
	}
}

// parseInterleaved parses flags given before, between or after the positional arguments
// and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

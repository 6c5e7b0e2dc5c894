package main

import (
	"context"
	"io"
	"strings"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

// defaultConfigPath is the configuration the subcommands read without -c (where the
// package installs it, under config.Prefix).
var defaultConfigPath = config.DefaultFile()

// subcommand runs one subcommand; args exclude its name.
type subcommand func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// subcommands maps the first argument to its implementation. runner runs pfctl, kldload,
// sysctl and service for the subcommands that change the host (cmdrun.Exec in main, a
// recorder in tests).
func subcommands(runner cmdrun.Runner) map[string]subcommand {
	h := hostCommands{runner: runner}
	return map[string]subcommand{
		"allow":        h.runAllow,
		"check-config": runCheckConfig,
		"cluster":      runCluster,
		"handover":     h.runHandover,
		"redis":        runRedis,
		"pf":           h.runPF,
		"setup":        h.runSetup,
		"version":      runVersion,
	}
}

// hostCommands are the subcommands that run external tools on this host (pf, allow,
// setup).
type hostCommands struct {
	runner cmdrun.Runner
}

// subFlags is the flag set of a subcommand that reads the daemon's configuration: -c FILE
// (default defaultConfigPath) and every configuration key as a flag.
func subFlags(name string, stderr io.Writer) *config.FlagSet {
	fs := config.NewFlagSet("redis-carp-proxy " + name)
	fs.SetOutput(stderr)
	return fs
}

// parseVerb splits "VERB [flags] ARGS" or "[flags] VERB ARGS" and loads the configuration.
func parseVerb(fs *config.FlagSet, args []string) (verb string, rest []string, cfg *config.Config, file string, err error) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		verb, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", nil, nil, "", err
	}
	rest = fs.Args()
	if verb == "" && len(rest) > 0 {
		verb, rest = rest[0], rest[1:]
	}
	cfg, file, err = loadConfig(fs)
	return verb, rest, cfg, file, err
}

// loadConfig applies -c (or the default file) and the flags.
func loadConfig(fs *config.FlagSet) (*config.Config, string, error) {
	if fs.File() == "" {
		if err := fs.FlagSet.Set("c", defaultConfigPath); err != nil {
			return nil, "", err
		}
	}
	cfg, err := fs.Load()
	if err != nil {
		return nil, "", err
	}
	return cfg, fs.File(), nil
}

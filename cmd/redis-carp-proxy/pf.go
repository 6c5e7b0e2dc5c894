package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/pfctl"
)

// defaultConfigPath is the configuration the subcommands read without -c (where the
// package installs it, under config.Prefix).
var defaultConfigPath = config.DefaultFile()

// commandRunner runs pfctl, kldload, sysctl and service for the subcommands; tests
// replace it with a recorder.
var commandRunner cmdrun.Runner = cmdrun.Exec{}

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

func newPF(p pfctl.Params) *pfctl.PF {
	return &pfctl.PF{Runner: commandRunner, Anchor: p.Anchor, Table: p.Table}
}

// ensureAllowFile creates an empty allowlist (header only) when it is missing: pfctl
// refuses to load a table whose file does not exist.
func ensureAllowFile(path string, stdout io.Writer) error {
	if _, err := os.Stat(path); err == nil || !os.IsNotExist(err) {
		return err
	}
	l, err := pfctl.ReadAllowFile(path)
	if err != nil {
		return err
	}
	if err := l.WriteFile(path); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created %s (empty: add sources with `redis-carp-proxy allow add`)\n", path)
	return nil
}

const pfUsage = "usage: redis-carp-proxy pf render|apply|show [-c FILE]"

// runPF implements `pf render|apply|show`.
func runPF(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := subFlags("pf", stderr)
	verb, rest, cfg, file, err := parseVerb(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return errors.New(pfUsage)
	}
	p, err := pfctl.FromConfig(cfg, file)
	if err != nil {
		return err
	}
	switch verb {
	case "render":
		rules, err := pfctl.Render(p)
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, rules)
		return err
	case "apply":
		if err := ensureAllowFile(p.AllowFile, stdout); err != nil {
			return err
		}
		if err := newPF(p).Apply(ctx, p); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "loaded anchor %q and table <%s> from %s\n", p.Anchor, p.Table, p.AllowFile)
		return nil
	case "show":
		pf := newPF(p)
		rules, err := pf.Rules(ctx)
		if err != nil {
			return err
		}
		entries, err := pf.TableEntries(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "# anchor %q rules\n%s", p.Anchor, rules)
		if rules != "" && !strings.HasSuffix(rules, "\n") {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "# table <%s>: %d entries\n", p.Table, len(entries))
		for _, e := range entries {
			fmt.Fprintln(stdout, e)
		}
		return nil
	default:
		return errors.New(pfUsage)
	}
}

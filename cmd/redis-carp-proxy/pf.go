package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun"
	"github.com/redis-carp-proxy/redis-carp-proxy/pfctl"
)

// newPF drives the anchor and table of p through runner.
func newPF(runner cmdrun.Runner, p pfctl.Params) *pfctl.PF {
	return &pfctl.PF{Runner: runner, Anchor: p.Anchor, Table: p.Table}
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
func (h hostCommands) runPF(ctx context.Context, args []string, stdout, stderr io.Writer) error {
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
		if err := newPF(h.runner, p).Apply(ctx, p); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "loaded anchor %q and table <%s> from %s\n", p.Anchor, p.Table, p.AllowFile)
		return nil
	case "show":
		pf := newPF(h.runner, p)
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

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/redis-carp-proxy/redis-carp-proxy/pfctl"
)

const allowUsage = "usage: redis-carp-proxy allow add|del|list [-c FILE] [-no-apply] [ADDR|CIDR ...]"

// runAllow implements `allow add|del|list`: it edits pf-allow-file atomically, keeping
// its comments, then replaces the pf table from it.
func (h hostCommands) runAllow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := subFlags("allow", stderr)
	noApply := fs.Bool("no-apply", false, "only edit the file; do not replace the pf table")
	verb, addrs, cfg, file, err := parseVerb(fs, args)
	if err != nil {
		return err
	}
	p, err := pfctl.FromConfig(cfg, file)
	if err != nil {
		return err
	}
	list, err := pfctl.ReadAllowFile(p.AllowFile)
	if err != nil {
		return err
	}
	if verb == "list" {
		if len(addrs) > 0 {
			return errors.New(allowUsage)
		}
		for _, e := range list.Entries() {
			fmt.Fprintln(stdout, pfctl.FormatEntry(e))
		}
		return nil
	}
	if verb != "add" && verb != "del" || len(addrs) == 0 {
		return errors.New(allowUsage)
	}
	// Validate everything before touching the file.
	var entries []netip.Prefix
	for _, a := range addrs {
		e, err := pfctl.ParseEntry(a)
		if err != nil {
			return fmt.Errorf("allow %s: %w", verb, err)
		}
		entries = append(entries, e)
	}
	changed := false
	for _, e := range entries {
		s := pfctl.FormatEntry(e)
		switch {
		case verb == "add" && list.Add(e):
			fmt.Fprintf(stdout, "added %s\n", s)
			changed = true
		case verb == "add":
			fmt.Fprintf(stdout, "%s is already allowed\n", s)
		case list.Remove(e):
			fmt.Fprintf(stdout, "removed %s\n", s)
			changed = true
		default:
			fmt.Fprintf(stdout, "%s is not in the allowlist\n", s)
		}
	}
	if changed {
		if err := list.WriteFile(p.AllowFile); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", p.AllowFile)
	}
	if *noApply {
		return nil
	}
	if err := ensureAllowFile(p.AllowFile, stdout); err != nil {
		return err
	}
	if err := newPF(h.runner, p).ReplaceTable(ctx, p.AllowFile); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "table <%s> in anchor %q now matches %s (%d entries)\n", p.Table, p.Anchor, p.AllowFile, len(list.Entries()))
	return nil
}

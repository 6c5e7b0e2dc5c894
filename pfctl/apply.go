package pfctl

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/atomicfile"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun"
)

// Pfctl is pfctl(8) by its path (sbin/pfctl installs to /sbin): never looked up in PATH,
// which the environment of a reload or of setup could change.
const Pfctl = "/sbin/pfctl"

// PF drives pfctl(8) for one anchor and its table. Loading needs root (/dev/pf).
type PF struct {
	Runner cmdrun.Runner
	Path   string // pfctl binary; "" = Pfctl
	Anchor string
	Table  string
}

func (pf *PF) run(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	path := pf.Path
	if path == "" {
		path = Pfctl
	}
	out, err := pf.Runner.Run(ctx, stdin, path, args...)
	if err != nil {
		return out, fmt.Errorf("pfctl: %w", err)
	}
	return out, nil
}

// LoadAnchor replaces the anchor's rules (and defines its tables) with rules:
// pfctl -a ANCHOR -f - with the rules on stdin.
func (pf *PF) LoadAnchor(ctx context.Context, rules string) error {
	_, err := pf.run(ctx, []byte(rules), "-a", pf.Anchor, "-f", "-")
	return err
}

// ReplaceTable atomically sets the table to the addresses of file:
// pfctl -a ANCHOR -t TABLE -T replace -f FILE.
func (pf *PF) ReplaceTable(ctx context.Context, file string) error {
	_, err := pf.run(ctx, nil, "-a", pf.Anchor, "-t", pf.Table, "-T", "replace", "-f", file)
	return err
}

// Rules returns the loaded rules of the anchor as pfctl prints them (pfctl -a ANCHOR -s rules).
func (pf *PF) Rules(ctx context.Context) (string, error) {
	out, err := pf.run(ctx, nil, "-a", pf.Anchor, "-s", "rules")
	return string(out), err
}

// TableEntries returns the table's addresses (pfctl -a ANCHOR -t TABLE -T show).
func (pf *PF) TableEntries(ctx context.Context) ([]TableEntry, error) {
	out, err := pf.run(ctx, nil, "-a", pf.Anchor, "-t", pf.Table, "-T", "show")
	if err != nil {
		return nil, err
	}
	return ParseTableShow(string(out))
}

// Apply writes the rendered anchor to p.AnchorFile (what pf.conf loads at boot, so the
// rules survive a reboot), loads it, then replaces the table from its file, so that a
// table already loaded with other contents is brought in line with the file.
func (pf *PF) Apply(ctx context.Context, p Params) error {
	rules, err := Render(p)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(p.AnchorFile, []byte(rules), 0o644); err != nil {
		return fmt.Errorf("pfctl: write the anchor file: %w", err)
	}
	if err := pf.LoadAnchor(ctx, rules); err != nil {
		return err
	}
	return pf.ReplaceTable(ctx, p.AllowFile)
}

// TableEntry is one line of pfctl -T show.
type TableEntry struct {
	Prefix  netip.Prefix
	Negated bool
}

func (e TableEntry) String() string {
	if e.Negated {
		return "!" + FormatEntry(e.Prefix)
	}
	return FormatEntry(e.Prefix)
}

// ParseTableShow parses the output of pfctl -T show: one entry a line, indented, "!"
// before a negated entry, an address alone for a host.
func ParseTableShow(out string) ([]TableEntry, error) {
	var entries []TableEntry
	sc := bufio.NewScanner(strings.NewReader(out))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var e TableEntry
		if strings.HasPrefix(line, "!") {
			e.Negated = true
			line = strings.TrimSpace(line[1:])
		}
		// With -v, statistics follow the address on the same line after a tab or space.
		if f := strings.Fields(line); len(f) > 0 {
			line = f[0]
		}
		p, err := ParseEntry(line)
		if err != nil {
			return nil, fmt.Errorf("pfctl -T show line %d: %w", n, err)
		}
		e.Prefix = p
		entries = append(entries, e)
	}
	return entries, sc.Err()
}

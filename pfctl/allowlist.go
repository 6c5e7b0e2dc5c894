package pfctl

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/atomicfile"
)

// AllowListHeader starts a new allowlist file.
const AllowListHeader = `# redis-carp-proxy allowlist: sources allowed to reach Redis, the cluster bus and the
# admin port. One IP address or CIDR a line; "#" starts a comment. Loaded into the pf
# table by "redis-carp-proxy pf apply"; edit with "redis-carp-proxy allow add|del".
`

// AllowList is an allowlist file kept line by line, so that editing it preserves
// comments, blank lines and the order of entries.
type AllowList struct {
	lines []allowLine
}

type allowLine struct {
	entries []netip.Prefix
	comment string // from "#" on, or the whole line when it has no entry
	raw     string
	dirty   bool
}

// ParseAllowList parses an allowlist in pfctl's table file format restricted to
// addresses: whitespace-separated entries, "#" comments. name is used in errors.
func ParseAllowList(data []byte, name string) (*AllowList, error) {
	l := &AllowList{}
	text := string(data)
	if text == "" {
		return l, nil
	}
	for i, raw := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		ln := allowLine{raw: raw}
		body := raw
		if j := strings.IndexByte(raw, '#'); j >= 0 {
			body, ln.comment = raw[:j], raw[j:]
		}
		for _, f := range strings.Fields(body) {
			p, err := ParseEntry(f)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", name, i+1, err)
			}
			ln.entries = append(ln.entries, p)
		}
		l.lines = append(l.lines, ln)
	}
	return l, nil
}

// ReadAllowFile reads path; a missing file is an empty list that starts with
// AllowListHeader when written.
func ReadAllowFile(path string) (*AllowList, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return ParseAllowList([]byte(AllowListHeader), path)
	}
	if err != nil {
		return nil, fmt.Errorf("allowlist: %w", err)
	}
	return ParseAllowList(data, path)
}

// Entries returns every entry in file order.
func (l *AllowList) Entries() []netip.Prefix {
	var out []netip.Prefix
	for _, ln := range l.lines {
		out = append(out, ln.entries...)
	}
	return out
}

// Contains reports whether p is an entry.
func (l *AllowList) Contains(p netip.Prefix) bool {
	for _, e := range l.Entries() {
		if e == p {
			return true
		}
	}
	return false
}

// Add appends p on a line of its own; it reports false when p is already listed.
func (l *AllowList) Add(p netip.Prefix) bool {
	if l.Contains(p) {
		return false
	}
	l.lines = append(l.lines, allowLine{entries: []netip.Prefix{p}, dirty: true})
	return true
}

// Remove deletes every occurrence of p; a line left with only a comment keeps the
// comment, a line left empty disappears. It reports false when p was not listed.
func (l *AllowList) Remove(p netip.Prefix) bool {
	found := false
	out := l.lines[:0]
	for _, ln := range l.lines {
		kept := ln.entries[:0:0]
		for _, e := range ln.entries {
			if e == p {
				found = true
				continue
			}
			kept = append(kept, e)
		}
		if len(kept) != len(ln.entries) {
			if len(kept) == 0 && ln.comment == "" {
				continue
			}
			ln.entries, ln.dirty = kept, true
		}
		out = append(out, ln)
	}
	l.lines = out
	return found
}

// Bytes renders the file: untouched lines byte for byte, edited ones normalised.
func (l *AllowList) Bytes() []byte {
	var b bytes.Buffer
	for _, ln := range l.lines {
		if !ln.dirty {
			b.WriteString(ln.raw)
		} else {
			parts := make([]string, 0, len(ln.entries)+1)
			for _, e := range ln.entries {
				parts = append(parts, FormatEntry(e))
			}
			if ln.comment != "" {
				parts = append(parts, ln.comment)
			}
			b.WriteString(strings.Join(parts, " "))
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// WriteFile replaces path with the list, atomically (mode 0644 for a new file).
func (l *AllowList) WriteFile(path string) error {
	return atomicfile.Write(path, l.Bytes(), 0o644)
}

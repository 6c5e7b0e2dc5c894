// Package rcconf edits files of NAME=value assignments: rc.conf(5) and the files under
// /etc/rc.conf.d (sourced by sh(1), values double-quoted) and sysctl.conf(5) (values
// bare). Both kinds of file are read from top to bottom, so the last assignment of a
// name is the one in effect.
//
// The rule, for both: after Set, the file holds exactly one assignment of the name, with
// the new value, in the place of the assignment that was in effect (the last one), or
// appended at the end when there was none. Earlier assignments of the name are removed
// (they had no effect, but a reader would take the first one for the setting) and
// reported. Every other line (comments, blank lines, other names) is kept as it was. An
// assignment that already holds the value is left byte for byte as written (its quoting,
// spacing and trailing comment included).
package rcconf

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Style is how a value is written.
type Style int

const (
	// Quoted writes NAME="value" (rc.conf, rc.conf.d, as sysrc(8) does).
	Quoted Style = iota
	// Bare writes NAME=value (sysctl.conf).
	Bare
)

// assignment matches NAME=VALUE [# comment], NAME in group 1, the rest in group 2.
// sysctl.conf(5) allows blanks around '='; sh does not, but such a line is no
// assignment sh would run either way, so accepting them costs nothing.
var assignment = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=(.*)$`)

// value returns the value of the right-hand side of an assignment: a double- or
// single-quoted string without its quotes, or the bare word up to a blank or '#'.
func value(rhs string) string {
	rhs = strings.TrimLeft(rhs, " \t")
	if rhs == "" {
		return ""
	}
	if rhs[0] == '"' {
		// sh(1): inside double quotes a backslash escapes $ ` " \ (and is kept before
		// anything else).
		var b strings.Builder
		for i := 1; i < len(rhs); i++ {
			c := rhs[i]
			if c == '"' {
				break
			}
			if c == '\\' && i+1 < len(rhs) && strings.IndexByte("$`\"\\", rhs[i+1]) >= 0 {
				i++
				c = rhs[i]
			}
			b.WriteByte(c)
		}
		return b.String()
	}
	if rhs[0] == '\'' {
		if end := strings.IndexByte(rhs[1:], '\''); end >= 0 {
			return rhs[1 : 1+end]
		}
		return rhs[1:]
	}
	if i := strings.IndexAny(rhs, " \t#"); i >= 0 {
		return rhs[:i]
	}
	return rhs
}

// Get returns the value in effect for name (the last assignment) and whether there is one.
func Get(content, name string) (string, bool) {
	v, found := "", false
	for _, l := range lines(content) {
		if m := assignment.FindStringSubmatch(l); m != nil && m[1] == name {
			v, found = value(m[2]), true
		}
	}
	return v, found
}

// Set returns content with name set to v under the package rule, and one note per
// removed earlier assignment. Content without a final newline gets one when it changes.
func Set(content, name, v string, style Style) (string, []string) {
	want := name + "=" + v
	if style == Quoted {
		want = name + "=" + shQuote(v)
	}
	ls := lines(content)
	var at []int
	for i, l := range ls {
		if m := assignment.FindStringSubmatch(l); m != nil && m[1] == name {
			at = append(at, i)
		}
	}
	if len(at) == 1 {
		if m := assignment.FindStringSubmatch(ls[at[0]]); value(m[2]) == v {
			return content, nil
		}
	}
	var notes []string
	out := make([]string, 0, len(ls)+1)
	for i, l := range ls {
		switch {
		case len(at) > 0 && i == at[len(at)-1]:
			out = append(out, want)
		case len(at) > 1 && slices.Contains(at, i):
			notes = append(notes, fmt.Sprintf("removed an earlier %s line (line %d, overridden by a later one): %s", name, i+1, strings.TrimSpace(l)))
		default:
			out = append(out, l)
		}
	}
	if len(at) == 0 {
		out = append(out, want)
	}
	return strings.Join(out, "\n") + "\n", notes
}

// lines splits s into lines without their newlines; "" has none.
func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// shQuote double-quotes v for sh(1): $, `, " and \ are escaped, so that sourcing the file
// gives back v and runs nothing (Go's %q, used before, left $ and ` live). v must be one
// line.
func shQuote(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if strings.IndexByte("$`\"\\", v[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
	return b.String()
}

package hostsetup

import (
	"fmt"
	"strings"
)

// pf.conf(5) statements, as far as setup needs to know them to place the anchor hook.
// pfctl (sbin/pfctl/parse.y, check_rulestate) requires the order options, normalization
// (scrub), queueing, translation (nat, rdr, binat and their anchors), filtering (pass,
// block, match, antispoof, anchor); macros, tables and `load anchor` may appear anywhere.
// Every rule of the redis-carp-proxy anchor is quick, so it decides only for packets no
// earlier quick rule took: its hook must come before the first filter rule.

// pfStatement is one statement of pf.conf: lines [start, end), joined by trailing
// backslashes and by braces or parentheses left open (macros and inline anchors span
// lines this way).
type pfStatement struct {
	start, end int
	words      []string // the statement's words, comments removed, quotes kept
}

// first returns the statement's first word ("" for none).
func (s pfStatement) first() string {
	if len(s.words) == 0 {
		return ""
	}
	return s.words[0]
}

// isFilter reports whether the statement is a filter rule (pf's last section).
func (s pfStatement) isFilter() bool {
	switch s.first() {
	case "pass", "block", "match", "antispoof", "anchor":
		return true
	}
	return false
}

// pfStatements splits pf.conf's lines into statements, skipping blank and comment lines.
func pfStatements(lines []string) []pfStatement {
	var out []pfStatement
	var cur *pfStatement
	depth := 0
	for i, l := range lines {
		code, cont := stripPFComment(l)
		if cur == nil {
			if strings.TrimSpace(code) == "" && !cont {
				continue
			}
			cur = &pfStatement{start: i}
		}
		cur.words = append(cur.words, strings.Fields(code)...)
		depth += strings.Count(code, "{") + strings.Count(code, "(") - strings.Count(code, "}") - strings.Count(code, ")")
		if cont || depth > 0 {
			continue
		}
		cur.end = i + 1
		out = append(out, *cur)
		cur, depth = nil, 0
	}
	if cur != nil {
		cur.end = len(lines)
		out = append(out, *cur)
	}
	return out
}

// stripPFComment returns the line without its comment (a '#' outside double quotes) and
// whether it ends with a backslash continuation.
func stripPFComment(l string) (string, bool) {
	inQuote := false
	for i := 0; i < len(l); i++ {
		switch l[i] {
		case '"':
			inQuote = !inQuote
		case '#':
			if !inQuote {
				l = l[:i]
			}
		}
	}
	t := strings.TrimRight(l, " \t")
	if strings.HasSuffix(t, "\\") {
		return strings.TrimSuffix(t, "\\"), true
	}
	return l, false
}

// unquote removes one pair of double quotes.
func unquote(w string) string {
	if len(w) >= 2 && w[0] == '"' && w[len(w)-1] == '"' {
		return w[1 : len(w)-1]
	}
	return w
}

// isHook reports whether the statement evaluates the anchor's own rules: `anchor NAME` or
// `anchor "NAME"`, with any filter options. `anchor "NAME/*"` evaluates only NAME's child
// anchors, never its rules, so it is no hook.
func (s pfStatement) isHook(anchor string) bool {
	return s.first() == "anchor" && len(s.words) > 1 && unquote(s.words[1]) == anchor
}

// isLoad reports whether the statement is `load anchor NAME from FILE` for the anchor,
// and returns FILE.
func (s pfStatement) isLoad(anchor string) (string, bool) {
	w := s.words
	if len(w) == 5 && w[0] == "load" && w[1] == "anchor" && unquote(w[2]) == anchor && w[3] == "from" {
		return unquote(w[4]), true
	}
	return "", false
}

// hookLines is what setup writes into pf.conf: the hook and, right after it, the line
// that loads the anchor's rules from file whenever pf.conf is loaded (at boot by
// rc.d/pf, which runs before the proxy starts).
func hookLines(anchor, file string) []string {
	return []string{
		"# redis-carp-proxy allowlist, before the first filter rule: its rules are quick.",
		fmt.Sprintf("anchor %q", anchor),
		fmt.Sprintf("load anchor %q from %q", anchor, file),
	}
}

// placeHook returns pfconf with the anchor hooked in before the first filter rule and
// loaded from file, and a note on what it did ("" when nothing changed). A hook that
// already is the first filter rule stays where it is; one further down (where earlier
// quick rules bypass it) is moved up; `load anchor` lines for the anchor are replaced by
// the one after the hook.
func placeHook(pfconf, anchor, file string) (string, string) {
	lines := splitLines(pfconf)
	stmts := pfStatements(lines)
	firstFilter, hookAt := -1, -1
	var loads []pfStatement
	loadOK := false
	for i, s := range stmts {
		if s.isFilter() && firstFilter < 0 {
			firstFilter = i
		}
		if s.isHook(anchor) && hookAt < 0 {
			hookAt = i
		}
		if f, ok := s.isLoad(anchor); ok {
			loads = append(loads, s)
			loadOK = loadOK || f == file
		}
	}
	if hookAt >= 0 && hookAt == firstFilter && len(loads) == 1 && loadOK && loads[0].start == stmts[hookAt].end {
		return pfconf, ""
	}

	// Drop what is to be rewritten: an existing hook that is not the first filter rule
	// (with setup's own comment line above it) and every load line of the anchor.
	drop := map[int]bool{}
	dropStmt := func(s pfStatement) {
		for i := s.start; i < s.end; i++ {
			drop[i] = true
		}
		if s.start > 0 && strings.HasPrefix(lines[s.start-1], "# redis-carp-proxy allowlist") {
			drop[s.start-1] = true
		}
	}
	keepHook := hookAt >= 0 && hookAt == firstFilter
	if hookAt >= 0 && !keepHook {
		dropStmt(stmts[hookAt])
	}
	for _, s := range loads {
		dropStmt(s)
	}

	// Where the new lines go: right after a kept hook, else before the first filter rule
	// (and its comment lines), else at the end.
	insertAt, insert := len(lines), hookLines(anchor, file)
	var note string
	switch {
	case keepHook:
		insertAt, insert = stmts[hookAt].end, insert[2:]
		note = fmt.Sprintf("anchor %q is loaded from %s at boot", anchor, file)
	case firstFilter >= 0:
		insertAt = stmts[firstFilter].start
		for insertAt > 0 && strings.HasPrefix(strings.TrimSpace(lines[insertAt-1]), "#") && !drop[insertAt-1] {
			insertAt--
		}
		note = fmt.Sprintf("anchor %q hooked in before the first filter rule (%s) and loaded from %s at boot",
			anchor, strings.Join(stmts[firstFilter].words, " "), file)
		if hookAt >= 0 {
			note = fmt.Sprintf("anchor %q moved up before the first filter rule (%s): quick rules before it bypassed it; loaded from %s at boot",
				anchor, strings.Join(stmts[firstFilter].words, " "), file)
		}
	default:
		note = fmt.Sprintf("anchor %q hooked in at the end (pf.conf has no filter rule) and loaded from %s at boot", anchor, file)
	}
	var out []string
	for i := 0; i <= len(lines); i++ {
		if i == insertAt {
			if !keepHook && len(out) > 0 && strings.TrimSpace(out[len(out)-1]) != "" {
				out = append(out, "")
			}
			out = append(out, insert...)
			if !keepHook && i < len(lines) {
				out = append(out, "")
			}
		}
		if i < len(lines) && !drop[i] {
			out = append(out, lines[i])
		}
		// A removed block leaves no blank line behind it doubled or at the end.
		if i < len(lines) && drop[i] && (i+1 == len(lines) || !drop[i+1]) && len(out) > 0 && strings.TrimSpace(out[len(out)-1]) == "" &&
			(i+1 == len(lines) || strings.TrimSpace(lines[i+1]) == "") {
			out = out[:len(out)-1]
		}
	}
	return strings.Join(out, "\n") + "\n", note
}

// splitLines splits s into lines without their newlines; "" has none.
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

package hostsetup

import (
	"regexp"
	"strings"
)

// setVar sets name to value in a file of "name=value" lines (rc.conf(5) style with
// quote, sysctl.conf(5) style without), keeping every other line. An existing setting
// with the same value is left untouched (the last one wins in both formats, so only the
// last is considered); one with another value is replaced in place; a missing one is
// appended.
func setVar(content, name, value string, quote bool) string {
	re := regexp.MustCompile(`^\s*` + regexp.QuoteMeta(name) + `\s*=\s*(.*?)\s*(#.*)?$`)
	want := name + "=" + value
	if quote {
		want = name + `="` + value + `"`
	}
	lines := splitLines(content)
	last := -1
	for i, l := range lines {
		if re.MatchString(l) {
			last = i
		}
	}
	if last >= 0 {
		m := re.FindStringSubmatch(lines[last])
		if unquoteShell(m[1]) == value {
			return content
		}
		lines[last] = want
	} else {
		lines = append(lines, want)
	}
	return strings.Join(lines, "\n") + "\n"
}

func unquoteShell(v string) string {
	if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
		return v[1 : len(v)-1]
	}
	return v
}

// hasAnchorHook reports whether pf.conf already refers to the anchor (anchor "NAME" or
// anchor NAME, optionally with /* for children).
func hasAnchorHook(pfconf, anchor string) bool {
	re := regexp.MustCompile(`(?m)^\s*anchor\s+"?` + regexp.QuoteMeta(anchor) + `(/\*)?"?(\s|$)`)
	return re.MatchString(pfconf)
}

// splitLines splits s into lines without their newlines; "" has none.
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

package hostsetup

import (
	"regexp"
	"strings"
)

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

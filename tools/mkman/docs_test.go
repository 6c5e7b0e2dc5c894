package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// anchors returns the GitHub anchors of a Markdown page's headings: lower case, spaces
// to hyphens, punctuation other than hyphens and underscores dropped.
func anchors(page string) map[string]bool {
	out := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, m := range regexp.MustCompile(`(?m)^#+ (.*)$`).FindAllStringSubmatch(page, -1) {
		a := drop.ReplaceAllString(strings.ToLower(strings.TrimSpace(m[1])), "")
		out[strings.ReplaceAll(a, " ", "-")] = true
	}
	return out
}

// TestDocsLinksResolve: every relative link of README.md and docs/*.md names a file of
// the repository and, with #anchor, a heading of that page.
func TestDocsLinksResolve(t *testing.T) {
	pages, _ := filepath.Glob("../../docs/*.md")
	pages = append(pages, "../../README.md")
	link := regexp.MustCompile(`\]\(([^)#\s]*)(#[^)\s]*)?\)`)
	n := 0
	for _, p := range pages {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		// Links in code spans and blocks are not links.
		text := regexp.MustCompile("(?s)```.*?```|`[^`\n]*`").ReplaceAllString(string(b), "")
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target, anchor := m[1], strings.TrimPrefix(m[2], "#")
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			n++
			file := p
			if target != "" {
				file = filepath.Join(filepath.Dir(p), target)
			}
			tb, err := os.ReadFile(file)
			if err != nil {
				t.Errorf("%s links to %s: %v", p, m[0], err)
				continue
			}
			if anchor != "" && !anchors(string(tb))[anchor] {
				t.Errorf("%s links to %s: no heading with anchor #%s in %s", p, m[0], anchor, file)
			}
		}
	}
	if n < 10 {
		t.Errorf("checked only %d links", n)
	}
}

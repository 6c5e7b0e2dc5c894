package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docConfigBlocks returns the configuration examples of a Markdown page: fenced blocks
// whose every line is blank, a comment, or starts with a configuration key, and the
// here-documents that write a redis-carp-proxy configuration file.
func docConfigBlocks(page string) []string {
	var blocks []string
	heredoc := regexp.MustCompile(`(?s)redis-carp-proxy[^\n]*\.conf <<'?EOF'?\n(.*?)\nEOF\n`)
	for _, m := range heredoc.FindAllStringSubmatch(page, -1) {
		blocks = append(blocks, m[1])
	}
	fence := regexp.MustCompile("(?s)```[a-z]*\n(.*?)```")
	for _, m := range fence.FindAllStringSubmatch(page, -1) {
		keys := 0
		ok := true
		for _, l := range strings.Split(m[1], "\n") {
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			k, _, _ := strings.Cut(l, " ")
			if lookup(k) == nil {
				ok = false
				break
			}
			keys++
		}
		if ok && keys >= 2 {
			blocks = append(blocks, m[1])
		}
	}
	return blocks
}

// TestDocsConfigExamplesParse: every configuration example in README.md and docs/ is a
// file the proxy reads (a "# comment" after a value would be part of the value).
func TestDocsConfigExamplesParse(t *testing.T) {
	pages, _ := filepath.Glob("../../docs/*.md")
	pages = append(pages, "../../README.md")
	total := 0
	for _, p := range pages {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, blk := range docConfigBlocks(string(b)) {
			total++
			for _, l := range strings.Split(blk, "\n") {
				if l = strings.TrimSpace(l); !strings.HasPrefix(l, "#") && regexp.MustCompile(`\s#`).MatchString(l) {
					t.Errorf("%s: %q: a # after a value is part of the value, not a comment: put the comment on its own line", p, l)
				}
			}
			c := Default()
			if err := c.Parse(strings.NewReader(blk), filepath.Base(p)+" example"); err != nil {
				t.Errorf("%v\n%s", err, blk)
			}
		}
	}
	if total < 3 {
		t.Errorf("found %d configuration examples in the docs, want at least 3", total)
	}
}

package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy"
)

const confPage = "../../man/redis-carp-proxy.conf.5"

// TestConfPageIsGenerated keeps man/redis-carp-proxy.conf.5 equal to what the key table
// and the reload table give (go test ./tools/mkman -update, or go generate, rewrites it).
func TestConfPageIsGenerated(t *testing.T) {
	testutil.Golden(t, confPage, renderConf(config.KeyDocs(), proxy.Reloadable))
}

// TestConfPageListsEveryKey reads the committed page: every configuration key has its
// entry, with its default and its reload behaviour, and the page names no other key.
func TestConfPageListsEveryKey(t *testing.T) {
	b, err := os.ReadFile(confPage)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	entries := map[string]string{}
	parts := regexp.MustCompile(`(?m)^\.It Cm ([a-z0-9-]+)`).FindAllStringSubmatchIndex(page, -1)
	for i, p := range parts {
		end := len(page)
		if i+1 < len(parts) {
			end = parts[i+1][0]
		}
		entries[page[p[2]:p[3]]] = page[p[0]:end]
	}
	for _, k := range config.KeyDocs() {
		e, ok := entries[k.Name]
		if !ok {
			t.Errorf("%s has no entry (.It Cm %s) in %s", k.Name, k.Name, confPage)
			continue
		}
		delete(entries, k.Name)
		if k.Default != "" && !strings.Contains(e, k.Default) {
			t.Errorf("%s: entry lacks the default %q:\n%s", k.Name, k.Default, e)
		}
		if reload := strings.Contains(e, "Applied on\n.Dv SIGHUP"); reload != proxy.Reloadable(k.Name) {
			t.Errorf("%s: page says applied on SIGHUP %v, proxy.Reloadable %v", k.Name, reload, proxy.Reloadable(k.Name))
		}
		if !strings.Contains(e, "Type: "+k.Type) {
			t.Errorf("%s: entry lacks its type %q", k.Name, k.Type)
		}
	}
	for name := range entries {
		t.Errorf("%s documents %q, which is no configuration key", confPage, name)
	}
}

// TestConfPageExamplesLoad parses the EXAMPLES of the page as configuration files.
func TestConfPageExamplesLoad(t *testing.T) {
	b, err := os.ReadFile(confPage)
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile(`(?s)\.Bd -literal -offset indent\n(.*?)\.Ed\n`).FindAllStringSubmatch(string(b), -1)
	if len(blocks) < 2 {
		t.Fatalf("want at least 2 examples, found %d", len(blocks))
	}
	for _, blk := range blocks {
		c := config.Default()
		if err := c.Parse(strings.NewReader(blk[1]), "example"); err != nil {
			t.Errorf("example does not parse: %v\n%s", err, blk[1])
			continue
		}
		if err := c.Validate(); err != nil {
			t.Errorf("example does not validate: %v\n%s", err, blk[1])
		}
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

const manPage8 = "../../man/redis-carp-proxy.8"

func readManPage8(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(manPage8)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// manSection returns the text of section name (.Sh name) of an mdoc page.
func manSection(t *testing.T, page, name string) string {
	t.Helper()
	_, s, ok := strings.Cut(page, "\n.Sh "+name+"\n")
	if !ok {
		t.Fatalf("%s has no section %s", manPage8, name)
	}
	s, _, _ = strings.Cut(s, "\n.Sh ")
	return s
}

// subcommandVerbs returns each subcommand's verbs as its own usage messages name them
// ("pf render|apply|show", "cluster create ...", "redis init ..."); subcommands without
// verbs map to nil.
func subcommandVerbs(t *testing.T) map[string][]string {
	t.Helper()
	var usage bytes.Buffer
	usage.WriteString(pfUsage + "\n" + allowUsage + "\n")
	// cluster and redis print their usage when called without a verb.
	if err := runCluster(context.Background(), nil, &usage, &usage); err == nil {
		t.Fatal("cluster without a verb succeeded")
	}
	if err := runRedis(context.Background(), nil, &usage, &usage); err == nil {
		t.Fatal("redis without a verb succeeded")
	}
	verbs := map[string][]string{}
	for name := range subcommands(nil) {
		verbs[name] = nil
	}
	for _, m := range regexp.MustCompile(`redis-carp-proxy ([a-z-]+) ([a-z]+(?:\|[a-z]+)*)\b`).FindAllStringSubmatch(usage.String(), -1) {
		for _, v := range strings.Split(m[2], "|") {
			if !slices.Contains(verbs[m[1]], v) {
				verbs[m[1]] = append(verbs[m[1]], v)
			}
		}
	}
	for _, name := range []string{"pf", "allow", "cluster", "redis"} {
		if len(verbs[name]) == 0 {
			t.Fatalf("no verbs of %s found in the usage messages:\n%s", name, usage.String())
		}
	}
	return verbs
}

// TestManPageListsEverySubcommand: every subcommand and every verb of one is in the
// SYNOPSIS and has an entry in SUBCOMMANDS.
func TestManPageListsEverySubcommand(t *testing.T) {
	page := readManPage8(t)
	synopsis := manSection(t, page, "SYNOPSIS")
	sub := manSection(t, page, "SUBCOMMANDS")
	for name, verbs := range subcommandVerbs(t) {
		if !regexp.MustCompile(`(?m)^\.Cm ` + regexp.QuoteMeta(name) + `\b`).MatchString(synopsis) {
			t.Errorf("SYNOPSIS lacks %s", name)
		}
		if !regexp.MustCompile(`(?m)^\.It Cm ` + regexp.QuoteMeta(name) + `\b`).MatchString(sub) {
			t.Errorf("SUBCOMMANDS has no entry for %s", name)
		}
		for _, v := range verbs {
			// ".It Cm pf render", ".It Cm allow add | del", ".It Cm redis init", ".Cm render | apply | show"
			entry := regexp.MustCompile(`(?m)^\.It Cm ` + regexp.QuoteMeta(name) + `( [a-z]+ \|)* ` + v + `\b`)
			if !entry.MatchString(sub) {
				t.Errorf("SUBCOMMANDS has no entry for %s %s", name, v)
			}
			if !regexp.MustCompile(`\b` + v + `\b`).MatchString(synopsis) {
				t.Errorf("SYNOPSIS lacks %s %s", name, v)
			}
		}
	}
}

// subcommandFlags returns the options a subcommand defines besides -c and the
// configuration keys, from the flag usage it prints for -h.
func subcommandFlags(t *testing.T, args ...string) []string {
	t.Helper()
	var out, errw bytes.Buffer
	err := subcommands(nil)[args[0]](context.Background(), append(args[1:], "-h"), &out, &errw)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("%v -h: %v, want flag.ErrHelp\n%s", args, err, errw.String())
	}
	keys := map[string]bool{"c": true}
	for _, k := range config.Keys() {
		keys[k] = true
	}
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(errw.String(), -1) {
		if !keys[m[1]] {
			flags = append(flags, m[1])
		}
	}
	return flags
}

// TestManPageListsEveryOption: every option of every subcommand (what it prints for -h)
// is in the page, as .Fl -name or .Fl name.
func TestManPageListsEveryOption(t *testing.T) {
	page := readManPage8(t)
	total := 0
	for _, args := range [][]string{
		{"setup"}, {"pf", "render"}, {"allow", "list"}, {"redis", "init"},
		{"cluster", "create"}, {"cluster", "check"}, {"cluster", "reset"}, {"handover"},
	} {
		for _, f := range subcommandFlags(t, args...) {
			total++
			if !regexp.MustCompile(`\.(It|Op) Fl -?` + regexp.QuoteMeta(f) + `\b`).MatchString(page) {
				t.Errorf("%v: option -%s is not in %s", args, f, manPage8)
			}
		}
	}
	if total < 12 {
		t.Errorf("found only %d subcommand options: the -h output changed form?", total)
	}
}

// TestManPageListsAdminEndpoints: every path the admin listener registers (read from
// admin.go) is under ADMIN ENDPOINTS, and the page documents no path it does not serve.
func TestManPageListsAdminEndpoints(t *testing.T) {
	src, err := os.ReadFile("admin.go")
	if err != nil {
		t.Fatal(err)
	}
	sec := manSection(t, readManPage8(t), "ADMIN ENDPOINTS")
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\.It Pa (/[a-z/]*)`).FindAllStringSubmatch(sec, -1) {
		documented[m[1]] = true
	}
	served := regexp.MustCompile(`mux\.Handle(?:Func)?\("(/[^"]*)"`).FindAllStringSubmatch(string(src), -1)
	if len(served) < 5 {
		t.Fatalf("found %d paths in admin.go", len(served))
	}
	seen := map[string]bool{}
	for _, m := range served {
		p := m[1]
		ok := documented[p]
		for d := range documented {
			if strings.HasSuffix(d, "/") && strings.HasPrefix(p, d) {
				ok, seen[d] = true, true
			}
		}
		seen[p] = true
		if !ok {
			t.Errorf("admin path %s is not under ADMIN ENDPOINTS", p)
		}
	}
	for d := range documented {
		if !seen[d] {
			t.Errorf("ADMIN ENDPOINTS documents %s, which admin.go does not serve", d)
		}
	}
}

// TestManPageListsRCVariables: every rc.conf variable of the rc script, profile
// variables included, is under RC.CONF VARIABLES.
func TestManPageListsRCVariables(t *testing.T) {
	rc, err := os.ReadFile("../../rc.d/redis_carp_proxy.in")
	if err != nil {
		t.Fatal(err)
	}
	sec := manSection(t, readManPage8(t), "RC.CONF VARIABLES")
	vars := regexp.MustCompile(`\$\{(redis_carp_proxy_[a-z_]+)[:}]`).FindAllStringSubmatch(string(rc), -1)
	if len(vars) < 6 {
		t.Fatalf("found %d variables in the rc script", len(vars))
	}
	for _, m := range vars {
		if !strings.Contains(sec, ".It Va "+m[1]+"\n") {
			t.Errorf("rc variable %s is not under RC.CONF VARIABLES", m[1])
		}
	}
	prof := regexp.MustCompile(`redis_carp_proxy_\$\{_profile\}_([a-z]+)`).FindAllStringSubmatch(string(rc), -1)
	if len(prof) < 2 {
		t.Fatalf("found %d profile variables in the rc script", len(prof))
	}
	for _, m := range prof {
		if !strings.Contains(sec, ".Va redis_carp_proxy_ Ns Ar name Ns Va _"+m[1]) {
			t.Errorf("profile variable redis_carp_proxy_NAME_%s is not under RC.CONF VARIABLES", m[1])
		}
	}
}

// TestManPageNamesOnlyRealKeys: every hyphenated word the page marks as a command
// modifier (.Cm) is a configuration key or a subcommand, so a renamed key cannot
// linger in the page.
func TestManPageNamesOnlyRealKeys(t *testing.T) {
	known := map[string]bool{}
	for _, k := range config.Keys() {
		known[k] = true
	}
	for name := range subcommands(nil) {
		known[name] = true
	}
	page := readManPage8(t)
	macro := regexp.MustCompile(`^\.?[A-Z][a-z]$`)
	word := regexp.MustCompile(`^[a-z][a-z0-9-]*-[a-z0-9-]*$`)
	checked := 0
	for _, line := range strings.Split(page, "\n") {
		if !strings.HasPrefix(line, ".") {
			continue
		}
		in := false
		for _, w := range strings.Fields(line) {
			switch {
			case w == "Cm" || w == ".Cm":
				in = true
			case macro.MatchString(w):
				in = false // the next macro (Fl, Ar, Oo ...) ends the Cm arguments
			case in && word.MatchString(w):
				checked++
				if !known[w] {
					t.Errorf("%s marks %q as a key or subcommand; no such key or subcommand", manPage8, w)
				}
			}
		}
	}
	if checked < 20 {
		t.Errorf("checked only %d hyphenated Cm words", checked)
	}
}

// TestManPageSignals: the signals the daemon handles have their entries.
func TestManPageSignals(t *testing.T) {
	sec := manSection(t, readManPage8(t), "SIGNALS")
	for _, want := range []string{".It Dv SIGHUP\n", ".It Dv SIGTERM , Dv SIGINT\n"} {
		if !strings.Contains(sec, want) {
			t.Errorf("SIGNALS lacks %q", want)
		}
	}
	for file, want := range map[string]string{"reload.go": "syscall.SIGHUP", "main.go": "os.Interrupt, syscall.SIGTERM"} {
		b, err := os.ReadFile(file)
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s no longer handles %s: update SIGNALS and this test", file, want)
		}
	}
}

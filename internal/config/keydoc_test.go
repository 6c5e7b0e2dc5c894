package config

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestEveryKeyHasSyntax: the manual page needs every key's value syntax, and keySyntax
// names no key that does not exist.
func TestEveryKeyHasSyntax(t *testing.T) {
	known := map[string]bool{}
	for _, k := range keys {
		known[k.name] = true
		if _, ok := keySyntax[k.name]; !ok {
			t.Errorf("key %q has no entry in keySyntax (internal/config/keydoc.go): the manual page could not say how its value is written", k.name)
		}
	}
	for name := range keySyntax {
		if !known[name] {
			t.Errorf("keySyntax names %q, which is no configuration key", name)
		}
	}
}

// TestKeySyntaxMatchesParser checks each key's documented kind against its parser: the
// parser accepts the default and values of that kind and refuses what the kind refuses,
// so the type the manual page prints is the parser's.
func TestKeySyntaxMatchesParser(t *testing.T) {
	docs := map[string]KeyDoc{}
	for _, d := range KeyDocs() {
		docs[d.Name] = d
	}
	for _, k := range keys {
		syn := keySyntax[k.name]
		set := func(v string) error { return k.set(Default(), v) }
		if err := set(k.defValue()); err != nil {
			t.Errorf("%s: default %q refused: %v", k.name, k.defValue(), err)
		}
		accept := func(vs ...string) {
			for _, v := range vs {
				if err := set(v); err != nil {
					t.Errorf("%s (%s): %q refused: %v", k.name, syn.kind, v, err)
				}
			}
		}
		refuse := func(want string, vs ...string) {
			for _, v := range vs {
				if err := set(v); err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("%s (%s): %q gave %v, want an error with %q", k.name, syn.kind, v, err, want)
				}
			}
		}
		d := docs[k.name]
		switch syn.kind {
		case kindInt:
			refuse("want an integer", "x", "1.5")
			lo, hi, ok := intRange(k)
			if !ok {
				t.Errorf("%s: no range read from the parser", k.name)
				continue
			}
			accept(strconv.Itoa(lo), strconv.Itoa(hi))
			refuse("out of range", strconv.Itoa(lo-1), strconv.Itoa(hi+1))
			if d.Range != strconv.Itoa(lo)+" to "+strconv.Itoa(hi) {
				t.Errorf("%s: Range %q", k.name, d.Range)
			}
		case kindDuration:
			refuse("want a duration", "x", "5")
			accept("0s", "1h")
			if m := durationMin(k); m > 0 {
				accept(m.String())
				refuse("below the minimum", (m - time.Nanosecond).String())
				if d.Range != "at least "+m.String() {
					t.Errorf("%s: Range %q", k.name, d.Range)
				}
			}
		case kindSize:
			accept("1gb", "2048", "64kb")
			refuse("want a size", "12x", "-1")
		case kindBool:
			accept("yes", "no")
			refuse("want yes or no", "maybe")
		case kindChoice:
			cs := choices(k)
			if len(cs) < 2 {
				t.Errorf("%s: choices %q read from the parser", k.name, cs)
			}
			accept(cs...)
			refuse("want one of", "bogus")
			if d.Value != strings.Join(cs, " | ") {
				t.Errorf("%s: Value %q", k.name, d.Value)
			}
		case kindHostPort:
			accept("127.0.0.1:1", "[::1]:6379")
			refuse("want host:port", "nocolon")
		case kindIP:
			accept("198.51.100.1", "2001:db8::1")
			refuse("not an IP address", "nope", "198.51.100.1:1")
		case kindString, kindFile:
			accept("some text", "/a/path")
		case kindList:
		default:
			t.Errorf("%s: unknown kind %q", k.name, syn.kind)
		}
	}
}

// TestKeyDocsExamples pins a few documented facts read from the parsers.
func TestKeyDocsExamples(t *testing.T) {
	want := map[string]KeyDoc{
		"maxclients":               {Value: "number", Type: "integer", Default: "10000", Range: "1 to 1048576"},
		"slotmap-refresh-interval": {Value: "duration", Type: "duration", Default: "5s", Range: "at least 100ms"},
		"read-from":                {Value: "master | replica | prefer-replica", Type: "choice", Default: "master"},
		"pf-allow-file":            {Value: "file", Type: "file", Default: Prefix + "/etc/redis-carp-proxy/allow.list"},
	}
	seen := 0
	for _, d := range KeyDocs() {
		w, ok := want[d.Name]
		if !ok {
			continue
		}
		seen++
		if d.Value != w.Value || d.Type != w.Type || d.Default != w.Default || d.Range != w.Range {
			t.Errorf("%s: got %+v, want %+v", d.Name, d, w)
		}
	}
	if seen != len(want) {
		t.Errorf("KeyDocs lacks some of %v", want)
	}
	if n := len(KeyDocs()); n != len(keys) {
		t.Errorf("KeyDocs has %d keys, the table %d", n, len(keys))
	}
}

package hostsetup

import (
	"strings"
	"testing"
)

// pfSection is the rank pfctl's check_rulestate gives a statement (sbin/pfctl/parse.y):
// options, normalization, queueing, translation, filter; -1 for statements allowed
// anywhere (macros, tables, load anchor).
func pfSection(s pfStatement) int {
	switch s.first() {
	case "set":
		return 0
	case "scrub":
		return 1
	case "altq", "queue":
		return 2
	case "nat", "rdr", "binat", "nat-anchor", "rdr-anchor", "binat-anchor", "no":
		return 3
	}
	if s.isFilter() {
		return 4
	}
	return -1
}

// checkPFOrder fails when pfctl would refuse pf.conf for its order ("Rules must be in
// order: options, normalization, queueing, translation, filter").
func checkPFOrder(t *testing.T, pfconf string) {
	t.Helper()
	last := -1
	for _, s := range pfStatements(splitLines(pfconf)) {
		if r := pfSection(s); r >= 0 {
			if r < last {
				t.Errorf("pfctl would refuse the order at %q:\n%s", strings.Join(s.words, " "), pfconf)
			}
			last = r
		}
	}
}

// hookIsFirstFilterRule checks what matters at run time: no filter rule before the hook,
// and the anchor loaded from file.
func hookIsFirstFilterRule(t *testing.T, pfconf, anchor, file string) {
	t.Helper()
	loads := 0
	seenHook := false
	for _, s := range pfStatements(splitLines(pfconf)) {
		if f, ok := s.isLoad(anchor); ok {
			loads++
			if f != file {
				t.Errorf("load anchor from %q, want %q", f, file)
			}
		}
		if !s.isFilter() || seenHook {
			continue
		}
		if !s.isHook(anchor) {
			t.Fatalf("filter rule %q comes before the hook:\n%s", strings.Join(s.words, " "), pfconf)
		}
		seenHook = true
	}
	if !seenHook || loads != 1 {
		t.Fatalf("hook %v, %d load lines:\n%s", seenHook, loads, pfconf)
	}
}

const anchorFile = "/usr/local/etc/redis-carp-proxy/pf.anchor"

func TestPlaceHook(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{
			name: "before the first filter rule, after options, scrub and translation",
			in: `ext_if = "vtnet0"
mgmt = "{ 198.51.100.0/28, \
	198.51.100.32/28 }"
table <admins> const { 198.51.100.2 }
set skip on lo0
scrub in all
nat on $ext_if from 10.0.0.0/24 to any -> ($ext_if)
rdr pass on $ext_if proto tcp to port 8080 -> 10.0.0.5 port 80

# Trust the internal side.
pass quick on vtnet1
block in log all
`,
			want: `ext_if = "vtnet0"
mgmt = "{ 198.51.100.0/28, \
	198.51.100.32/28 }"
table <admins> const { 198.51.100.2 }
set skip on lo0
scrub in all
nat on $ext_if from 10.0.0.0/24 to any -> ($ext_if)
rdr pass on $ext_if proto tcp to port 8080 -> 10.0.0.5 port 80

# redis-carp-proxy allowlist, before the first filter rule: its rules are quick.
anchor "redis-carp-proxy"
load anchor "redis-carp-proxy" from "` + anchorFile + `"

# Trust the internal side.
pass quick on vtnet1
block in log all
`,
		},
		{
			// "NAME/*" evaluates only NAME's child anchors, never NAME's own rules.
			name: "children-only reference is no hook",
			in:   "pass all\nanchor \"redis-carp-proxy/*\"\n",
			want: "# redis-carp-proxy allowlist, before the first filter rule: its rules are quick.\nanchor \"redis-carp-proxy\"\nload anchor \"redis-carp-proxy\" from \"" + anchorFile + "\"\n\npass all\nanchor \"redis-carp-proxy/*\"\n",
		},
		{
			name: "hook after quick rules is moved up",
			in:   "block quick on vtnet0 proto carp\npass quick on vtnet1\n\n# redis-carp-proxy allowlist (rules: redis-carp-proxy pf render)\nanchor \"redis-carp-proxy\"\n",
			want: "# redis-carp-proxy allowlist, before the first filter rule: its rules are quick.\nanchor \"redis-carp-proxy\"\nload anchor \"redis-carp-proxy\" from \"" + anchorFile + "\"\n\nblock quick on vtnet0 proto carp\npass quick on vtnet1\n",
		},
		{
			name: "hook already first: only the load line is added",
			in:   "set skip on lo0\nanchor redis-carp-proxy in on vtnet0\npass all\n",
			want: "set skip on lo0\nanchor redis-carp-proxy in on vtnet0\nload anchor \"redis-carp-proxy\" from \"" + anchorFile + "\"\npass all\n",
		},
		{
			name: "stale load line replaced",
			in:   "load anchor \"redis-carp-proxy\" from \"/old/file\"\nanchor \"redis-carp-proxy\"\npass all\n",
			want: "anchor \"redis-carp-proxy\"\nload anchor \"redis-carp-proxy\" from \"" + anchorFile + "\"\npass all\n",
		},
		{
			name: "no filter rule: at the end",
			in:   "set skip on lo0\n",
			want: "set skip on lo0\n\n# redis-carp-proxy allowlist, before the first filter rule: its rules are quick.\nanchor \"redis-carp-proxy\"\nload anchor \"redis-carp-proxy\" from \"" + anchorFile + "\"\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, note := placeHook(tc.in, "redis-carp-proxy", anchorFile)
			if got != tc.want {
				t.Fatalf("placeHook:\n%s\nwant:\n%s", got, tc.want)
			}
			if note == "" {
				t.Error("a change without a note")
			}
			checkPFOrder(t, got)
			hookIsFirstFilterRule(t, got, "redis-carp-proxy", anchorFile)
			if again, note := placeHook(got, "redis-carp-proxy", anchorFile); again != got || note != "" {
				t.Fatalf("second run changed it (%s):\n%s", note, again)
			}
		})
	}
}

func TestPFStatements(t *testing.T) {
	in := "a = \"{ x, \\\n  y }\"   # pass quick\n# pass all\n\nanchor \"in\" {\n  pass quick\n}\nblock all # \"quoted\n"
	st := pfStatements(splitLines(in))
	var got []string
	for _, s := range st {
		got = append(got, s.first())
	}
	if strings.Join(got, ",") != "a,anchor,block" || st[1].start != 4 || st[1].end != 7 {
		t.Fatalf("statements %+v", st)
	}
}

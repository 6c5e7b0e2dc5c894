package rcconf

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestSet(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		style          Style
		notes          int
	}{
		{"empty file", "", "pf_enable=\"YES\"\n", Quoted, 0},
		{"appended, other lines kept", "# c\nx=1", "# c\nx=1\npf_enable=\"YES\"\n", Quoted, 0},
		{"replaced in place", "# c\npf_enable=\"NO\"\nx=1\n", "# c\npf_enable=\"YES\"\nx=1\n", Quoted, 0},
		{"same value unquoted: untouched", "pf_enable=YES\n", "pf_enable=YES\n", Quoted, 0},
		{"same value with comment: untouched", "pf_enable=\"YES\" # on\n", "pf_enable=\"YES\" # on\n", Quoted, 0},
		{"same value single-quoted: untouched", "  pf_enable='YES'\n", "  pf_enable='YES'\n", Quoted, 0},
		{"other value with comment: replaced", "pf_enable=\"NO\" # off\n", "pf_enable=\"YES\"\n", Quoted, 0},
		{"similar names untouched", "pf_enable_x=\"NO\"\nxpf_enable=\"NO\"\n", "pf_enable_x=\"NO\"\nxpf_enable=\"NO\"\npf_enable=\"YES\"\n", Quoted, 0},
		{"commented-out assignment untouched", "#pf_enable=\"NO\"\n", "#pf_enable=\"NO\"\npf_enable=\"YES\"\n", Quoted, 0},
		// The last assignment was in effect: its line takes the value, earlier ones go.
		{"duplicates: last place kept", "pf_enable=\"NO\"\na=1\npf_enable=\"NO\"\nb=2\n", "a=1\npf_enable=\"YES\"\nb=2\n", Quoted, 1},
		{"duplicates with the value already last", "pf_enable=\"NO\"\npf_enable=\"YES\"\n", "pf_enable=\"YES\"\n", Quoted, 1},
		{"three duplicates", "pf_enable=1\npf_enable=2\npf_enable=3\n", "pf_enable=\"YES\"\n", Quoted, 2},
		{"bare style (sysctl.conf)", "kern.x=1\nnet.inet.carp.preempt=0\n", "kern.x=1\nnet.inet.carp.preempt=1\n", Bare, 0},
		{"bare style with blanks around =", "net.inet.carp.preempt = 1\n", "net.inet.carp.preempt = 1\n", Bare, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, v := "pf_enable", "YES"
			if tc.style == Bare {
				name, v = "net.inet.carp.preempt", "1"
			}
			got, notes := Set(tc.in, name, v, tc.style)
			if got != tc.want {
				t.Errorf("Set(%q) =\n%q\nwant\n%q", tc.in, got, tc.want)
			}
			if len(notes) != tc.notes {
				t.Errorf("notes %q, want %d", notes, tc.notes)
			}
			// Setting again changes nothing: the rule is a fixed point.
			if again, n := Set(got, name, v, tc.style); again != got || len(n) != 0 {
				t.Errorf("second Set changed %q to %q (%q)", got, again, n)
			}
			if g, ok := Get(got, name); !ok || g != v {
				t.Errorf("Get after Set = %q, %v", g, ok)
			}
		})
	}
}

func TestGetTakesTheLastAssignment(t *testing.T) {
	in := "redis_profiles=\"6379 7000\"\n# redis_profiles=\"x\"\nredis_profiles='7000 7001' # two\n"
	if v, ok := Get(in, "redis_profiles"); !ok || v != "7000 7001" {
		t.Fatalf("Get = %q, %v", v, ok)
	}
	if _, ok := Get(in, "redis_enable"); ok {
		t.Fatal("Get found a missing name")
	}
	if v, _ := Get(`x="a # b"`, "x"); v != "a # b" {
		t.Fatalf("quoted '#': %q", v)
	}
}

func TestSetNotesNameTheRemovedLine(t *testing.T) {
	_, notes := Set("redis_enable=\"NO\"\nredis_enable=\"YES\"\n", "redis_enable", "YES", Quoted)
	if len(notes) != 1 || !strings.Contains(notes[0], "line 1") || !strings.Contains(notes[0], `redis_enable="NO"`) {
		t.Fatalf("notes %q", notes)
	}
}

// TestQuotedValueIsInertInSh (issue 28, finding 18): a quoted value with $, backticks,
// quotes and backslashes is written so that sh(1), sourcing the file, gets it back as is
// and runs nothing; Get reads it back and a second Set leaves the file alone.
func TestQuotedValueIsInertInSh(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal("sh(1) not found")
	}
	dir := t.TempDir()
	canary := filepath.Join(dir, "ran")
	v := `p$(touch ` + canary + `)a` + "`touch " + canary + "`" + `s"s\w$HOME\$x`
	out, _ := Set("# rc.conf\n", "ifconfig_em0_alias0", v, Quoted)
	file := filepath.Join(dir, "rc.conf")
	if err := os.WriteFile(file, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := exec.Command(sh, "-c", `. "$1"; printf '%s' "$ifconfig_em0_alias0"`, "sh", file).Output()
	if err != nil {
		t.Fatalf("sh: %v\n%s", err, out)
	}
	if string(got) != v {
		t.Fatalf("sh read %q, want %q\nfile:\n%s", got, v, out)
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatalf("sourcing the file ran a command:\n%s", out)
	}
	if g, ok := Get(out, "ifconfig_em0_alias0"); !ok || g != v {
		t.Fatalf("Get: %q", g)
	}
	if again, _ := Set(out, "ifconfig_em0_alias0", v, Quoted); again != out {
		t.Fatalf("a second Set rewrote the line:\n%s", again)
	}
}

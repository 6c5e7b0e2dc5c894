package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun/cmdruntest"
)

const sampleConf = "../../etc/redis-carp-proxy.conf.sample"

// runWith runs the CLI with a recording command runner.
func runWith(t *testing.T, rec *cmdruntest.Recorder, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(args, &out, &errb, rec)
	return out.String() + errb.String(), err
}

func TestPFRenderWithShippedSample(t *testing.T) {
	out, err := runWith(t, cmdruntest.New(nil), "pf", "render", "-c", sampleConf)
	if err != nil {
		t.Fatal(err)
	}
	// The shipped anchor sample is the rendering of the shipped configuration sample
	// (pfctl checks that); only the header names the file as given.
	shipped, err := os.ReadFile("../../etc/redis-carp-proxy.pf.anchor.sample")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(string(shipped), "# from redis-carp-proxy.conf.sample.", "# from "+sampleConf+".", 1)
	if out != want {
		t.Fatalf("pf render:\n%s\nwant:\n%s", out, want)
	}
	// Flags before the verb work too.
	if out2, err := runWith(t, cmdruntest.New(nil), "pf", "-c", sampleConf, "render"); err != nil || out2 != out {
		t.Fatalf("flags before the verb: %v\n%s", err, out2)
	}
}

func TestPFApplyAndShow(t *testing.T) {
	allow := filepath.Join(t.TempDir(), "allow.list")
	rec := cmdruntest.New(map[string]cmdruntest.Reply{
		"/sbin/pfctl -a redis-carp-proxy -s rules":               {Stdout: "pass in quick proto tcp from <redis_allow> to any port 7000:7100 flags S/SA keep state\n"},
		"/sbin/pfctl -a redis-carp-proxy -t redis_allow -T show": {Stdout: "   198.51.100.1\n   198.51.100.0/24\n"},
	})
	anchorFile := filepath.Join(t.TempDir(), "pf.anchor")
	out, err := runWith(t, rec, "pf", "apply", "-c", sampleConf, "-pf-allow-file", allow, "-pf-anchor-file", anchorFile)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if b, err := os.ReadFile(anchorFile); err != nil || !strings.Contains(string(b), "table <redis_allow> persist file \""+allow+"\"") {
		t.Fatalf("anchor file for boot: %v\n%s", err, b)
	}
	if !strings.Contains(out, "created "+allow) || !strings.Contains(out, `loaded anchor "redis-carp-proxy"`) {
		t.Fatalf("apply output:\n%s", out)
	}
	log := rec.Log()
	if !strings.HasPrefix(log, "$ /sbin/pfctl -a redis-carp-proxy -f -\n> # pf anchor") ||
		!strings.Contains(log, "> table <redis_allow> persist file \""+allow+"\"\n") ||
		!strings.HasSuffix(log, "$ /sbin/pfctl -a redis-carp-proxy -t redis_allow -T replace -f "+allow+"\n") {
		t.Fatalf("apply commands:\n%s", log)
	}
	out, err = runWith(t, rec, "pf", "show", "-c", sampleConf)
	if err != nil {
		t.Fatal(err)
	}
	want := `# anchor "redis-carp-proxy" rules
pass in quick proto tcp from <redis_allow> to any port 7000:7100 flags S/SA keep state
# table <redis_allow>: 2 entries
198.51.100.1
198.51.100.0/24
`
	if out != want {
		t.Fatalf("pf show:\n%s\nwant:\n%s", out, want)
	}
}

func TestPFApplySurfacesPfctlStderr(t *testing.T) {
	allow := filepath.Join(t.TempDir(), "allow.list")
	rec := cmdruntest.New(map[string]cmdruntest.Reply{
		"/sbin/pfctl -a redis-carp-proxy -f -": {Exit: 1, Stderr: "pfctl: /dev/pf: Permission denied\n"},
	})
	_, err := runWith(t, rec, "pf", "apply", "-c", sampleConf, "-pf-allow-file", allow, "-pf-anchor-file", filepath.Join(t.TempDir(), "pf.anchor"))
	if err == nil || !strings.Contains(err.Error(), "/dev/pf: Permission denied") {
		t.Fatalf("got %v", err)
	}
}

func TestAllowAddDelList(t *testing.T) {
	allow := filepath.Join(t.TempDir(), "allow.list")
	if err := os.WriteFile(allow, []byte("# web servers\n198.51.100.10 # web1\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	rec := cmdruntest.New(nil)
	conf := []string{"-c", sampleConf, "-pf-allow-file", allow}
	out, err := runWith(t, rec, append(append([]string{"allow", "add"}, conf...), "198.51.100.11", "198.51.100.10", "2001:db8::/48")...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	wantOut := "added 198.51.100.11\n198.51.100.10 is already allowed\nadded 2001:db8::/48\nwrote " + allow +
		"\ntable <redis_allow> in anchor \"redis-carp-proxy\" now matches " + allow + " (3 entries)\n"
	if out != wantOut {
		t.Fatalf("allow add:\n%s\nwant:\n%s", out, wantOut)
	}
	if got, _ := os.ReadFile(allow); string(got) != "# web servers\n198.51.100.10 # web1\n198.51.100.11\n2001:db8::/48\n" {
		t.Fatalf("file:\n%s", got)
	}
	if st, _ := os.Stat(allow); st.Mode().Perm() != 0o640 {
		t.Fatalf("mode changed to %v", st.Mode().Perm())
	}

	// A bad address changes nothing and runs nothing.
	before, _ := os.ReadFile(allow)
	n := rec.Log()
	_, err = runWith(t, rec, append(append([]string{"allow", "add"}, conf...), "198.51.100.12", "web3.example")...)
	if err == nil || !strings.Contains(err.Error(), `"web3.example": not an IP address or CIDR`) {
		t.Fatalf("got %v", err)
	}
	if after, _ := os.ReadFile(allow); string(after) != string(before) || rec.Log() != n {
		t.Fatal("a rejected add changed the file or ran pfctl")
	}

	out, err = runWith(t, rec, append(append([]string{"allow", "del"}, conf...), "198.51.100.10")...)
	if err != nil || !strings.Contains(out, "removed 198.51.100.10\n") {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err = runWith(t, rec, append([]string{"allow", "list"}, conf...)...)
	if err != nil || out != "198.51.100.11\n2001:db8::/48\n" {
		t.Fatalf("allow list: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(allow); string(got) != "# web servers\n# web1\n198.51.100.11\n2001:db8::/48\n" {
		t.Fatalf("file after del:\n%s", got)
	}
	wantCmds := "$ /sbin/pfctl -a redis-carp-proxy -t redis_allow -T replace -f " + allow + "\n" +
		"$ /sbin/pfctl -a redis-carp-proxy -t redis_allow -T replace -f " + allow + "\n"
	if rec.Log() != wantCmds {
		t.Fatalf("commands:\n%s\nwant:\n%s", rec.Log(), wantCmds)
	}
}

func TestSetupRootAndDryRun(t *testing.T) {
	root := t.TempDir()
	rec := cmdruntest.New(nil)
	out, err := runWith(t, rec, "setup", "--dry-run", "--root", root, "-c", sampleConf)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "/etc/pf.conf: would create\n--- /dev/null\n+++ /etc/pf.conf\n") {
		t.Fatalf("dry run output:\n%s", out)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Fatalf("dry run wrote %v", ents)
	}
	out, err = runWith(t, rec, "setup", "--root", root, "-c", sampleConf)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "skipped (not the running system): kldload carp") {
		t.Fatalf("with --root, commands must not run on this system:\n%s", out)
	}
	if rec.Log() != "" {
		t.Fatalf("commands ran with --root:\n%s", rec.Log())
	}
	if _, err := os.Stat(filepath.Join(root, "boot/loader.conf.d/redis-carp-proxy.conf")); err != nil {
		t.Fatal(err)
	}
}

// The privilege check is tested on its own: a test must never run setup on this system.
func TestSetupRefusesNonRoot(t *testing.T) {
	for _, tc := range []struct {
		live, dry bool
		euid      int
		ok        bool
	}{
		{true, false, 1001, false},
		{true, false, 0, true},
		{true, true, 1001, true},
		{false, false, 1001, true},
	} {
		err := checkSetupPrivileges(tc.live, tc.dry, tc.euid)
		if (err == nil) != tc.ok || err != nil && !strings.Contains(err.Error(), "needs root") {
			t.Errorf("live=%v dry=%v euid=%d: %v", tc.live, tc.dry, tc.euid, err)
		}
	}
}

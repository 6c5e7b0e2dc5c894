package hostsetup

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun/cmdruntest"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/pfctl"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/textdiff"
)

var fixedNow = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

// Replies recorded from FreeBSD 14.3: kldstat -q -m exits 1 for a missing module,
// sysctl -n prints the value, pfctl -s info starts with the status line.
var (
	freshHost = map[string]cmdruntest.Reply{
		"kldstat -q -m carp":              {Exit: 1},
		"kldstat -q -m pfsync":            {Exit: 1},
		"kldstat -q -m pflog":             {Exit: 1},
		"sysctl -n net.inet.carp.preempt": {Stdout: "0\n"},
		"/sbin/pfctl -s info":             {Stdout: "Status: Disabled                              Debug: Urgent\n"},
		"service pflog status":            {Exit: 1, Stdout: "pflogd is not running.\n"},
	}
	readyHost = map[string]cmdruntest.Reply{
		"sysctl -n net.inet.carp.preempt": {Stdout: "1\n"},
		"/sbin/pfctl -s info": {Stdout: "Status: Enabled for 12 days 03:04:05           Debug: Urgent\n\n" +
			"Interface Stats for vtnet0            IPv4             IPv6\n"},
	}
)

func loadConfig(t *testing.T, path string) *config.Config {
	t.Helper()
	c, err := config.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readTree returns every regular file under dir: relative path → content.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	tree := map[string]string{}
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return tree
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		tree[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func writeTree(t *testing.T, dir string, tree map[string]string) {
	t.Helper()
	for rel, content := range tree {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func compareTrees(t *testing.T, got, want map[string]string, label string) {
	t.Helper()
	var names []string
	for k := range got {
		names = append(names, k)
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		g, gok := got[n]
		w, wok := want[n]
		switch {
		case !gok:
			t.Errorf("%s: %s missing", label, n)
		case !wok:
			t.Errorf("%s: unexpected file %s:\n%s", label, n, g)
		case g != w:
			t.Errorf("%s: %s differs:\n%s", label, n, textdiff.Unified(n, n, w, g))
		}
	}
}

type setupCase struct {
	name    string
	config  string
	replies map[string]cmdruntest.Reply
	dryRun  bool
}

func runCase(t *testing.T, tc setupCase, root string) (stdout, commands string) {
	t.Helper()
	var out bytes.Buffer
	rec := cmdruntest.New(tc.replies)
	s := &Setup{
		Config: loadConfig(t, tc.config), ConfigFile: filepath.Base(tc.config),
		Root: root, DryRun: tc.dryRun, Live: true, Runner: rec, Out: &out, Now: fixedNow,
	}
	if err := s.Run(context.Background()); err != nil {
		t.Fatalf("setup: %v\noutput:\n%s", err, out.String())
	}
	return out.String(), rec.Log()
}

func TestSetupGoldenTrees(t *testing.T) {
	for _, tc := range []setupCase{
		{name: "fresh", config: "testdata/full.conf", replies: freshHost},
		{name: "existing", config: "../../etc/redis-carp-proxy.conf.sample", replies: readyHost},
		{name: "existing-dry-run", config: "../../etc/redis-carp-proxy.conf.sample", replies: readyHost, dryRun: true},
		// rc.d/pf loads ${pf_rules}: the hook goes there, and pfctl reloads that file.
		{name: "pf-rules", config: "../../etc/redis-carp-proxy.conf.sample", replies: readyHost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join("testdata", tc.name)
			in := filepath.Join(dir, "in")
			if tc.name == "existing-dry-run" {
				in = filepath.Join("testdata", "existing", "in")
			}
			root := t.TempDir()
			before := readTree(t, in)
			writeTree(t, root, before)
			stdout, commands := runCase(t, tc, root)
			after := readTree(t, root)
			testutil.Golden(t, filepath.Join(dir, "stdout.txt"), stdout)
			testutil.Golden(t, filepath.Join(dir, "commands.txt"), commands)
			if tc.dryRun {
				compareTrees(t, after, before, "dry run must change nothing")
				return
			}
			outDir := filepath.Join(dir, "out")
			if testutil.Update() {
				os.RemoveAll(outDir)
				writeTree(t, outDir, after)
			}
			compareTrees(t, after, readTree(t, outDir), "tree")
		})
	}
}

// A second run on a set-up host changes no file and loads only the anchor and table.
func TestSetupIsIdempotent(t *testing.T) {
	root := t.TempDir()
	tc := setupCase{name: "fresh", config: "testdata/full.conf", replies: freshHost}
	runCase(t, tc, root)
	first := readTree(t, root)
	// The host now has the modules, preemption, pf and pflog running.
	tc.replies = map[string]cmdruntest.Reply{
		"sysctl -n net.inet.carp.preempt": {Stdout: "1\n"},
		"/sbin/pfctl -s info":             readyHost["/sbin/pfctl -s info"],
	}
	stdout, commands := runCase(t, tc, root)
	compareTrees(t, readTree(t, root), first, "second run")
	if strings.Contains(stdout, "updated") || strings.Contains(stdout, "created") {
		t.Errorf("second run changed files:\n%s", stdout)
	}
	wantCmds := `$ kldstat -q -m carp
$ kldstat -q -m pf
$ kldstat -q -m pfsync
$ kldstat -q -m pflog
$ sysctl -n net.inet.carp.preempt
$ /sbin/pfctl -s info
$ service pflog status
$ /sbin/pfctl -a redis-carp-proxy -f -
`
	if !strings.HasPrefix(commands, wantCmds) || !strings.HasSuffix(commands, "$ /sbin/pfctl -a redis-carp-proxy -t redis_allow -T replace -f /usr/local/etc/redis-carp-proxy/allow.list\n") {
		t.Errorf("second run commands:\n%s", commands)
	}
}

func TestSetupSurfacesCommandErrors(t *testing.T) {
	replies := map[string]cmdruntest.Reply{}
	for k, v := range freshHost {
		replies[k] = v
	}
	replies["kldload carp"] = cmdruntest.Reply{Exit: 1, Stderr: "kldload: can't load carp: module already loaded or in kernel\n"}
	var out bytes.Buffer
	s := &Setup{Config: loadConfig(t, "testdata/full.conf"), Root: t.TempDir(), Live: true,
		Runner: cmdruntest.New(replies), Out: &out, Now: fixedNow}
	err := s.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "can't load carp") {
		t.Fatalf("got %v, want kldload's stderr", err)
	}
}

func TestSetupRefusesUnsafePeer(t *testing.T) {
	c := loadConfig(t, "testdata/full.conf")
	c.PFSyncPeer = `198.51.100.12"; reboot; "`
	root := t.TempDir()
	var out bytes.Buffer
	s := &Setup{Config: c, Root: root, Live: true, Runner: cmdruntest.New(nil), Out: &out, Now: fixedNow}
	if err := s.Run(context.Background()); !errors.Is(err, ErrBadPeer) {
		t.Fatalf("got %v, want ErrBadPeer", err)
	}
	if tree := readTree(t, root); len(tree) != 0 {
		t.Fatalf("files written before validation: %v", tree)
	}
}

// After setup, a reboot must bring the anchor back before anything else filters: rc.d/pf
// (REQUIRE: FILESYSTEMS, so /usr/local is mounted; the proxy's rc script REQUIRE: pf)
// runs `pfctl -f /etc/pf.conf`, which loads every `load anchor` file. This replays that
// on the trees setup wrote: the hook is pf.conf's first filter rule, and what pf.conf
// loads is the rendered anchor, whose table file exists.
func TestBootLoadsTheAnchor(t *testing.T) {
	for _, tc := range []setupCase{
		{name: "fresh", config: "testdata/full.conf", replies: freshHost},
		{name: "existing", config: "../../etc/redis-carp-proxy.conf.sample", replies: readyHost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, readTree(t, filepath.Join("testdata", tc.name, "in")))
			runCase(t, tc, root)
			p, err := pfctl.FromConfig(loadConfig(t, tc.config), filepath.Base(tc.config))
			if err != nil {
				t.Fatal(err)
			}
			pfconf, err := os.ReadFile(filepath.Join(root, PFConf))
			if err != nil {
				t.Fatal(err)
			}
			checkPFOrder(t, string(pfconf))
			hookIsFirstFilterRule(t, string(pfconf), p.Anchor, p.AnchorFile)
			for _, s := range pfStatements(splitLines(string(pfconf))) {
				file, ok := s.isLoad(p.Anchor)
				if !ok {
					continue
				}
				got, err := os.ReadFile(filepath.Join(root, file))
				if err != nil {
					t.Fatalf("pf.conf loads %s at boot: %v", file, err)
				}
				want, _ := pfctl.Render(p)
				if string(got) != want {
					t.Fatalf("%s is not the rendered anchor:\n%s", file, got)
				}
				if _, err := os.Stat(filepath.Join(root, p.AllowFile)); err != nil {
					t.Fatalf("the anchor's table file: %v", err)
				}
			}
		})
	}
}

// pf_rules is found where rc.subr's load_rc_config finds it, the last assignment winning;
// a value setup cannot resolve without sh is refused.
func TestPFRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		tree map[string]string
		want string
		err  bool
	}{
		{name: "unset", tree: map[string]string{"etc/rc.conf": "pf_enable=\"YES\"\n"}, want: "/etc/pf.conf"},
		{name: "defaults", tree: map[string]string{"etc/defaults/rc.conf": "pf_rules=\"/etc/pf.conf\"\t# rules definition file for pf\n"}, want: "/etc/pf.conf"},
		{name: "rc.conf", tree: map[string]string{"etc/rc.conf": "pf_rules=\"/etc/pf/main.conf\"\n"}, want: "/etc/pf/main.conf"},
		{name: "rc.conf.local over rc.conf", tree: map[string]string{"etc/rc.conf": "pf_rules=/a.conf\n", "etc/rc.conf.local": "pf_rules=/b.conf\n"}, want: "/b.conf"},
		{name: "rc.conf.d directory", tree: map[string]string{"etc/rc.conf": "pf_rules=/a.conf\n",
			"etc/rc.conf.d/pf/10-base": "pf_rules=/c.conf\n", "etc/rc.conf.d/pf/20-site": "pf_rules=/d.conf\n"}, want: "/d.conf"},
		{name: "local rc.conf.d last", tree: map[string]string{"etc/rc.conf.d/pf": "pf_rules=/c.conf\n",
			"usr/local/etc/rc.conf.d/pf": "pf_rules='/usr/local/etc/pf.conf'\n"}, want: "/usr/local/etc/pf.conf"},
		{name: "variable", tree: map[string]string{"etc/rc.conf": "pf_rules=\"${pf_dir}/pf.conf\"\n"}, err: true},
		{name: "relative", tree: map[string]string{"etc/rc.conf": "pf_rules=pf.conf\n"}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tc.tree)
			got, err := (&Setup{Root: root}).pfRules()
			if tc.err {
				if !errors.Is(err, ErrPFRules) {
					t.Fatalf("pfRules = %q, %v; want ErrPFRules", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("pfRules = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

package redissetup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun/cmdruntest"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/textdiff"
)

func noUser(string) (account, bool, error) { return account{}, false, nil }

// testPassword stands in for the random cluster password in the golden trees.
const testPassword = "0123456789abcdef0123456789abcdef"

// someoneElse is a user that owns none of the directories the test creates.
func someoneElse(string) (account, bool, error) {
	return account{uid: os.Getuid() + 4242, gid: os.Getgid() + 4242}, true, nil
}

// tree renders every directory and file under root (modes and contents) as text.
func tree(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			fmt.Fprintf(&b, "d %04o /%s\n", info.Mode().Perm(), rel)
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "f %04o /%s\n", info.Mode().Perm(), rel)
		for _, l := range strings.SplitAfter(string(data), "\n") {
			if l != "" {
				b.WriteString("  | " + l)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func runInit(t *testing.T, o Options) (string, error) {
	t.Helper()
	var out bytes.Buffer
	o.Out = &out
	if o.randPass == nil {
		o.randPass = func() (string, error) { return testPassword, nil }
	}
	err := Init(context.Background(), o)
	return strings.ReplaceAll(out.String(), o.Root, "$ROOT"), err
}

func TestInitFreshRedisThenIdempotent(t *testing.T) {
	root := t.TempDir()
	r := cmdruntest.New(nil)
	o := Options{Ports: []int{7000, 7001}, Bind: "198.51.100.11", Root: root, runner: r, lookup: noUser}
	out, err := runInit(t, o)
	if err != nil {
		t.Fatal(err)
	}
	first := tree(t, root)
	testutil.Golden(t, "testdata/init-fresh-redis.golden", "### output\n"+out+"### tree\n"+first)
	if got := r.Log(); got != "" {
		t.Fatalf("chown without the user:\n%s", got)
	}

	// Again: nothing changes, no backup appears.
	out, err = runInit(t, o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "nothing to change") || strings.Contains(out, "created") || strings.Contains(out, "updated") {
		t.Fatalf("second run changed something:\n%s", out)
	}
	if again := tree(t, root); again != first {
		t.Fatalf("second run changed the tree:\n%s", textdiff.Unified("first", "second", first, again))
	}
	// A dry run of the same is empty too.
	o.DryRun = true
	if out, err = runInit(t, o); err != nil || !strings.Contains(out, "nothing to change") || strings.Contains(out, "@@") {
		t.Fatalf("dry run after init: %v\n%s", err, out)
	}
}

func TestInitValkeyChownsThroughRunner(t *testing.T) {
	root := t.TempDir()
	r := cmdruntest.New(nil)
	o := Options{Ports: []int{7000, 7001, 7002}, Bind: "198.51.100.12", Root: root, Flavor: "valkey",
		runner: r, lookup: someoneElse, euid: func() int { return 0 }}
	out, err := runInit(t, o)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "testdata/init-fresh-valkey.golden", "### output\n"+out+"### tree\n"+tree(t, root))
	want := strings.ReplaceAll(`$ chown valkey:valkey ROOT/var/run/valkey
$ chown valkey:valkey ROOT/var/log/valkey
$ chown valkey:valkey ROOT/var/db/valkey/7000
$ chown valkey:valkey ROOT/var/db/valkey/7001
$ chown valkey:valkey ROOT/var/db/valkey/7002
$ chown root:valkey ROOT/usr/local/etc/valkey-7000.conf
$ chown root:valkey ROOT/usr/local/etc/valkey-7001.conf
$ chown root:valkey ROOT/usr/local/etc/valkey-7002.conf
`, "ROOT", root)
	if got := r.Log(); got != want {
		t.Fatalf("commands:\n%s\nwant:\n%s", got, want)
	}
}

// existingHost is a host where the package is installed and an operator already started
// by hand: the default config, an rc.conf.d file with other settings and an old profile,
// and one instance config that differs.
func existingHost(t *testing.T) string {
	root := t.TempDir()
	for path, content := range map[string]string{
		"/usr/local/etc/redis.conf":          "bind 127.0.0.1 -::1\nport 6379\n",
		"/etc/rc.conf.d/redis":               "# local settings\nredis_enable=\"NO\"\nredis_user=\"redis\"\nredis_profiles=\"6379 7000\"\n",
		"/usr/local/etc/redis-7000.conf":     "port 7000\ncluster-enabled yes\nappendonly no\n",
		"/usr/local/etc/redis-7000.conf.bak": "an older backup\n",
	} {
		p := filepath.Join(root, path)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestInitExistingHost(t *testing.T) {
	root := existingHost(t)
	before := tree(t, root)
	o := Options{Ports: []int{7000, 7001}, Bind: "198.51.100.13", Root: root, runner: cmdruntest.New(nil), lookup: noUser}

	// The default config exists: the operator must choose; nothing is written.
	if _, err := runInit(t, o); !errors.Is(err, ErrDefaultConfChoice) {
		t.Fatalf("err %v, want ErrDefaultConfChoice", err)
	}
	if after := tree(t, root); after != before {
		t.Fatalf("refused run changed the tree:\n%s", textdiff.Unified("before", "after", before, after))
	}

	o.DefaultConf = "remove"
	o.DryRun = true
	out, err := runInit(t, o)
	if err != nil {
		t.Fatal(err)
	}
	if after := tree(t, root); after != before {
		t.Fatalf("dry run changed the tree:\n%s", textdiff.Unified("before", "after", before, after))
	}
	testutil.Golden(t, "testdata/init-existing-dry-run.golden", out)

	o.DryRun = false
	out, err = runInit(t, o)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "testdata/init-existing.golden", "### output\n"+out+"### tree\n"+tree(t, root))

	// keep leaves a (new) default config alone and says so.
	os.WriteFile(filepath.Join(root, "usr/local/etc/redis.conf"), []byte("port 6379\n"), 0o644)
	o.DefaultConf = "keep"
	if out, err = runInit(t, o); err != nil || !strings.Contains(out, "keep /usr/local/etc/redis.conf") || !strings.Contains(out, "nothing to change") {
		t.Fatalf("keep: %v\n%s", err, out)
	}
}

func TestInitNotRootSkipsChown(t *testing.T) {
	r := cmdruntest.New(nil)
	o := Options{Ports: []int{7000}, Bind: "198.51.100.11", Root: t.TempDir(), runner: r, lookup: someoneElse,
		euid: func() int { return 1000 }}
	out, err := runInit(t, o)
	if err != nil || r.Log() != "" || !strings.Contains(out, "not running as root") {
		t.Fatalf("err %v, commands %q, output:\n%s", err, r.Log(), out)
	}
}

func TestInitRCConfDirectory(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/rc.conf.d/redis"), 0o755)
	o := Options{Ports: []int{7000}, Bind: "198.51.100.11", Root: root, runner: cmdruntest.New(nil), lookup: noUser}
	out, err := runInit(t, o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "etc/rc.conf.d/redis/redis-carp-proxy"))
	if err != nil || !strings.Contains(string(b), "redis_profiles=\"7000\"\n") || !strings.Contains(out, "is a directory") {
		t.Fatalf("%v %q\n%s", err, b, out)
	}
}

func TestInitBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Bind: "198.51.100.11"},
		{Ports: []int{7000}},
		{Ports: []int{7000}, Bind: "0.0.0.0"},
		{Ports: []int{7000}, Bind: "not-an-ip"},
		{Ports: []int{7000, 7000}, Bind: "198.51.100.11"},
		{Ports: []int{7000, 17000}, Bind: "198.51.100.11"},
		{Ports: []int{60000}, Bind: "198.51.100.11"},
		{Ports: []int{0}, Bind: "198.51.100.11"},
		{Ports: []int{7000}, Bind: "198.51.100.11", Flavor: "keydb"},
		{Ports: []int{7000}, Bind: "198.51.100.11", DefaultConf: "delete"},
	} {
		o.Root = t.TempDir()
		if _, err := runInit(t, o); !errors.Is(err, ErrBadOptions) {
			t.Errorf("%+v: err %v, want ErrBadOptions", o, err)
		}
		if entries, _ := os.ReadDir(o.Root); len(entries) != 0 {
			t.Errorf("%+v: wrote %v", o, entries)
		}
	}
}

func TestMain(m *testing.M) {
	// The golden trees record modes: directories created with MkdirAll depend on the umask.
	syscall.Umask(0o022)
	os.Exit(m.Run())
}

// rcConf follows rcconf's rule: the assignment in effect (the last) takes the value in
// its place, earlier ones are removed and reported.
func TestRCConfDuplicateProfiles(t *testing.T) {
	old := "redis_profiles=\"6379\"\n# mine\nredis_profiles=\"7000 7002\"\nredis_user=\"redis\"\n"
	got, notes := rcConf(Flavors["redis"], []byte(old), []int{7000, 7001})
	want := "# mine\nredis_profiles=\"7000 7001\"\nredis_user=\"redis\"\nredis_enable=\"YES\"\n"
	if string(got) != want {
		t.Fatalf("rcConf:\n%s\nwant:\n%s", got, want)
	}
	joined := strings.Join(notes, "\n")
	if !strings.Contains(joined, "profiles 7002 are no longer started") || !strings.Contains(joined, `redis_profiles="6379"`) {
		t.Fatalf("notes: %q", notes)
	}
}

// TestInitClusterPassword (issue 28, finding 12): the instances require the cluster
// password, made once (mode 0600) and reused from the copied file on the next host; it is
// never printed, and --no-auth writes none.
func TestInitClusterPassword(t *testing.T) {
	first := t.TempDir()
	out, err := runInit(t, Options{Ports: []int{7000}, Bind: "198.51.100.11", Root: first, runner: cmdruntest.New(nil),
		lookup: noUser, randPass: newPassword})
	if err != nil {
		t.Fatal(err)
	}
	passPath := filepath.Join(first, DefaultPassFile)
	pass, err := ReadPassFile(passPath)
	if err != nil || len(pass) != 64 {
		t.Fatalf("cluster.pass: %q %v", pass, err)
	}
	if strings.Contains(out, pass) {
		t.Fatalf("the password was printed:\n%s", out)
	}
	conf := filepath.Join(first, "usr/local/etc/redis-7000.conf")
	b, _ := os.ReadFile(conf)
	if !strings.Contains(string(b), "\nrequirepass "+pass+"\n") || !strings.Contains(string(b), "\nmasterauth "+pass+"\n") {
		t.Fatalf("instance config:\n%s", b)
	}
	for p, want := range map[string]fs.FileMode{passPath: 0o600, conf: 0o640} {
		if st, _ := os.Stat(p); st.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", p, st.Mode().Perm(), want)
		}
	}
	// The second host: the file copied there, the same password; a dry run masks it.
	second := t.TempDir()
	os.MkdirAll(filepath.Dir(filepath.Join(second, DefaultPassFile)), 0o755)
	os.WriteFile(filepath.Join(second, DefaultPassFile), []byte(pass+"\n"), 0o600)
	o := Options{Ports: []int{7000}, Bind: "198.51.100.12", Root: second, runner: cmdruntest.New(nil), lookup: noUser,
		randPass: func() (string, error) { t.Fatal("a new password on the second host"); return "", nil }}
	o.DryRun = true
	if out, err = runInit(t, o); err != nil || strings.Contains(out, pass) || !strings.Contains(out, "+requirepass <"+DefaultPassFile+">") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	o.DryRun = false
	if _, err = runInit(t, o); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(second, "usr/local/etc/redis-7000.conf")); !strings.Contains(string(b), "requirepass "+pass+"\n") {
		t.Fatalf("second host:\n%s", b)
	}
	// A password file others can read is refused.
	os.Chmod(filepath.Join(second, DefaultPassFile), 0o644)
	if _, err = runInit(t, o); !errors.Is(err, ErrPassFile) {
		t.Fatalf("world-readable cluster.pass: %v", err)
	}
	// --no-auth: no password anywhere.
	third := t.TempDir()
	if _, err = runInit(t, Options{Ports: []int{7000}, Bind: "198.51.100.13", Root: third, runner: cmdruntest.New(nil), lookup: noUser, NoAuth: true}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(third, "usr/local/etc/redis-7000.conf")); strings.Contains(string(b), "requirepass") {
		t.Fatalf("--no-auth:\n%s", b)
	}
	if _, err := os.Stat(filepath.Join(third, DefaultPassFile)); err == nil {
		t.Fatal("--no-auth created a password file")
	}
}

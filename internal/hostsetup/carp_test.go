package hostsetup

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun/cmdruntest"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
)

func writePass(t *testing.T, dir, pass string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, "carp.pass")
	if err := os.WriteFile(p, []byte(pass), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask
		t.Fatal(err)
	}
	return p
}

func TestReadCarpPass(t *testing.T) {
	dir := t.TempDir()
	if got, err := ReadCarpPass(writePass(t, dir, "s3cret.Pass\n", 0o600)); err != nil || got != "s3cret.Pass" {
		t.Fatalf("ReadCarpPass = %q, %v", got, err)
	}
	if _, err := ReadCarpPass(writePass(t, dir, "s3cret", 0o400)); err != nil {
		t.Fatalf("mode 0400: %v", err)
	}
	for _, tc := range []struct {
		pass string
		mode os.FileMode
		want string
	}{
		{"s3cret", 0o644, "mode 0644 lets others read it; run chmod 600"},
		{"s3cret", 0o640, "mode 0640"},
		{"", 0o600, "empty"},
		{"a\nb\n", 0o600, "more than one line"},
		{"abcdefghijklmnopqrst", 0o600, "20 characters, carp(4) keeps 19"},
		{"ab-cd", 0o600, "'-' starts an address range"},
		{"a b", 0o600, "letters, digits"},
		{"a$(reboot)", 0o600, "letters, digits"},
		{"inet", 0o600, "letters, digits"},
	} {
		_, err := ReadCarpPass(writePass(t, dir, tc.pass, tc.mode))
		if !errors.Is(err, ErrCarpPass) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("pass %q mode %04o: err = %v, want %q", tc.pass, tc.mode, err, tc.want)
		}
	}
	if _, err := ReadCarpPass(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

// activeActiveSetup runs setup --carp (or not) for host 2 of three VIPs under root.
func activeActiveSetup(t *testing.T, root string, write, dryRun bool, passFile string) (string, error) {
	t.Helper()
	c := config.Default()
	err := c.Parse(strings.NewReader("listen :6379\ncluster-seeds 198.51.100.1:7000\ncarp-mode freebsd\ncarp-interface vtnet0\n"+
		"vips 198.51.100.101@1,198.51.100.102@2,198.51.100.103@3\ncarp-host-index 2\n"), "aa.conf")
	if err != nil {
		t.Fatal(err)
	}
	c.CarpPassFile = passFile
	c.PFAllowFile = "/usr/local/etc/redis-carp-proxy/allow.list"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	s := &Setup{Config: c, ConfigFile: "aa.conf", Root: root, DryRun: dryRun, WriteCarp: write,
		Runner: &cmdruntest.Recorder{}, Out: &out, Now: fixedNow}
	err = s.Run(context.Background())
	return out.String(), err
}

// TestSetupWritesCarpAliases: setup --carp writes host 2's three CARP addresses into
// rc.conf.d/network (mode 0600), reusing the index of an alias already configuring one of
// the VIPs and skipping the indexes rc.conf uses; the password is never printed; a second
// run changes nothing; a dry run shows the diff with the password masked.
func TestSetupWritesCarpAliases(t *testing.T) {
	root := t.TempDir()
	const pass = "Rcp.test+2026"
	passFile := writePass(t, root, pass, 0o600)
	rel, _ := filepath.Rel(root, passFile)
	writeTree(t, root, map[string]string{
		"etc/rc.conf": "hostname=\"b\"\nifconfig_vtnet0=\"inet 198.51.100.12/24\"\n" +
			"ifconfig_vtnet0_alias0=\"inet 198.51.100.200/32\"\n" +
			"ifconfig_vtnet0_alias1=\"inet vhid 2 pass old alias 198.51.100.102/32\"\n",
	})

	// Without --carp: printed (password not shown), nothing written.
	out, err := activeActiveSetup(t, root, false, false, "/"+rel)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"carp: host 2 of 3; advskew 0 is the preferred host of a VIP:",
		`  ifconfig_vtnet0_alias2="inet 198.51.100.101/32 vhid 1 advskew 100 pass <carp-pass-file>"`,
		`  ifconfig_vtnet0_alias1="inet 198.51.100.102/32 vhid 2 advskew 0 pass <carp-pass-file>"`,
		`  ifconfig_vtnet0_alias3="inet 198.51.100.103/32 vhid 3 advskew 200 pass <carp-pass-file>"`,
		"carp: not written (setup --carp writes these lines to /etc/rc.conf.d/network)",
	}
	for _, w := range want {
		if !strings.Contains(out, w+"\n") {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "etc/rc.conf.d/network")); err == nil {
		t.Fatal("rc.conf.d/network written without --carp")
	}

	// Dry run with --carp: a diff, password masked.
	out, err = activeActiveSetup(t, root, true, true, "/"+rel)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "+ifconfig_vtnet0_alias1=\"inet 198.51.100.102/32 vhid 2 advskew 0 pass <carp-pass-file>\"") || strings.Contains(out, pass) {
		t.Fatalf("dry run output:\n%s", out)
	}

	// --carp: written, 0600, password only in the file.
	out, err = activeActiveSetup(t, root, true, false, "/"+rel)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, pass) {
		t.Fatalf("password printed:\n%s", out)
	}
	path := filepath.Join(root, "etc/rc.conf.d/network")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	wantFile := managed + "\n" +
		`ifconfig_vtnet0_alias2="inet 198.51.100.101/32 vhid 1 advskew 100 pass ` + pass + "\"\n" +
		`ifconfig_vtnet0_alias1="inet 198.51.100.102/32 vhid 2 advskew 0 pass ` + pass + "\"\n" +
		`ifconfig_vtnet0_alias3="inet 198.51.100.103/32 vhid 3 advskew 200 pass ` + pass + "\"\n"
	if string(b) != wantFile {
		t.Fatalf("rc.conf.d/network:\n%s\nwant:\n%s", b, wantFile)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("rc.conf.d/network mode %04o, want 0600", st.Mode().Perm())
	}
	if !strings.Contains(out, "carp: apply now with `service netif restart vtnet0`") {
		t.Errorf("no apply hint:\n%s", out)
	}

	// Idempotent: nothing changes; a file someone made world-readable is narrowed again.
	os.Chmod(path, 0o644)
	out, err = activeActiveSetup(t, root, true, false, "/"+rel)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "/etc/rc.conf.d/network: chmod 600") {
		t.Errorf("second run:\n%s", out)
	}
	if b2, _ := os.ReadFile(path); string(b2) != wantFile {
		t.Fatalf("second run changed the file:\n%s", b2)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o after the second run", st.Mode().Perm())
	}
	out, _ = activeActiveSetup(t, root, true, false, "/"+rel)
	if !strings.Contains(out, "/etc/rc.conf.d/network: unchanged") {
		t.Errorf("third run:\n%s", out)
	}

	// An unsafe password file stops setup with a clear error.
	os.Chmod(passFile, 0o644)
	if _, err := activeActiveSetup(t, root, true, false, "/"+rel); !errors.Is(err, ErrCarpPass) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable password file: %v", err)
	}
	// --carp without a password file, or without the host index: refused.
	if _, err := activeActiveSetup(t, root, true, false, ""); !errors.Is(err, ErrCarpConfig) || !strings.Contains(err.Error(), "carp-pass-file") {
		t.Fatalf("--carp without carp-pass-file: %v", err)
	}
}

// unicastSetup runs setup --carp for host 1 of two hosts sharing an IPv4 and an IPv6 VIP
// with unicast CARP, on a host whose kern.osreldate is osreldate ("": not live).
func unicastSetup(t *testing.T, root, osreldate, peers string) (string, error) {
	t.Helper()
	passFile := writePass(t, root, "Rcp.test+2026", 0o600)
	rel, _ := filepath.Rel(root, passFile)
	c := config.Default()
	err := c.Parse(strings.NewReader("listen :6379\ncluster-seeds 198.51.100.1:7000\ncarp-mode freebsd\ncarp-interface vtnet0\n"+
		"vips 198.51.100.101@1,2001:db8::101@2\ncarp-hosts 2\ncarp-host-index 1\ncarp-peers "+peers+"\ncarp-pass-file /"+rel+"\n"), "uc.conf")
	if err != nil {
		t.Fatal(err)
	}
	c.PFAllowFile = "/usr/local/etc/redis-carp-proxy/allow.list"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rec := cmdruntest.New(map[string]cmdruntest.Reply{"sysctl -n kern.osreldate": {Stdout: osreldate + "\n"}})
	s := &Setup{Config: c, ConfigFile: "uc.conf", Root: root, WriteCarp: true, Live: osreldate != "",
		Runner: rec, Out: &out, Now: fixedNow}
	err = s.Run(context.Background())
	return out.String(), err
}

// setup --carp with carp-peers writes "peer" (IPv4 VIP) or "peer6" (IPv6 VIP) on each
// VIP's ifconfig line (FreeBSD 14+, ifconfig(8) ifcarp.c); FreeBSD 13 is refused before
// anything is written, since its ifconfig would reject every such line at boot.
func TestSetupWritesUnicastCarp(t *testing.T) {
	root := t.TempDir()
	out, err := unicastSetup(t, root, "1403000", "198.51.100.12,2001:db8::12")
	if err != nil {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	if !strings.Contains(out, "carp: unicast to 198.51.100.12, 2001:db8::12 (FreeBSD 14.3, kern.osreldate 1403000)") {
		t.Errorf("output:\n%s", out)
	}
	b, err := os.ReadFile(filepath.Join(root, "etc/rc.conf.d/network"))
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "testdata/unicast/network", string(b))

	// FreeBSD 13: refused, nothing written.
	root13 := t.TempDir()
	if out, err := unicastSetup(t, root13, "1303000", "198.51.100.12,2001:db8::12"); !errors.Is(err, ErrUnicastCarp) ||
		!strings.Contains(err.Error(), "kern.osreldate 1303000 (FreeBSD 13)") {
		t.Fatalf("FreeBSD 13: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(root13, "etc/rc.conf.d/network")); err == nil {
		t.Fatal("rc.conf.d/network written on FreeBSD 13")
	}
	// Not the running system (setup -root): the version cannot be read; said, not guessed.
	out, err = unicastSetup(t, t.TempDir(), "", "198.51.100.12,2001:db8::12")
	if err != nil || !strings.Contains(out, "needs FreeBSD 14.0 or later; the version of this host was not checked") {
		t.Fatalf("not live: %v\n%s", err, out)
	}
	// A VIP without a peer of its family: refused.
	if _, err := unicastSetup(t, t.TempDir(), "1403000", "198.51.100.12"); !errors.Is(err, ErrCarpConfig) ||
		!strings.Contains(err.Error(), "carp-peers has no IPv6 address for 2001:db8::101") {
		t.Fatalf("missing IPv6 peer: %v", err)
	}
}

// TestSetupCarpNarrowsAWorldReadableFile (issue 28, finding 14): an existing 0644
// rc.conf.d/network that receives the CARP password is 0600 after the first run, and so
// is its backup.
func TestSetupCarpNarrowsAWorldReadableFile(t *testing.T) {
	root := t.TempDir()
	const pass = "Rcp.test+2026"
	passFile := writePass(t, root, pass, 0o600)
	rel, _ := filepath.Rel(root, passFile)
	writeTree(t, root, map[string]string{
		"etc/rc.conf":           "hostname=\"b\"\nifconfig_vtnet0=\"inet 198.51.100.12/24\"\n",
		"etc/rc.conf.d/network": "# the administrator's own lines\nifconfig_vtnet0_alias0=\"inet 198.51.100.200/32\"\n",
	})
	path := filepath.Join(root, "etc/rc.conf.d/network")
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := activeActiveSetup(t, root, true, false, "/"+rel); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), "pass "+pass) {
		t.Fatalf("rc.conf.d/network: %v\n%s", err, b)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("rc.conf.d/network mode %04o after one run, want 0600", st.Mode().Perm())
	}
	backups, _ := filepath.Glob(path + ".bak-*")
	if len(backups) != 1 {
		t.Fatalf("backups: %v", backups)
	}
	if st, _ := os.Stat(backups[0]); st.Mode().Perm() != 0o600 {
		t.Fatalf("backup mode %04o, want 0600", st.Mode().Perm())
	}
}

package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

const repo = "../.."

// rcScript is the one rc script in the tree; make install-files installs it. The port
// keeps a copy (portRCScript) because a port in the ports tree must stand without the
// source tree (USE_RC_SUBR reads FILESDIR); TestPortRCScriptIsRCD keeps the two equal.
const (
	rcScript     = "rc.d/redis_carp_proxy.in"
	portRCScript = "port/files/redis_carp_proxy.in"
)

func TestPortRCScriptIsRCD(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(repo, rcScript))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(repo, portRCScript))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("%s differs from %s: copy it (cp %s %s)", portRCScript, rcScript, rcScript, portRCScript)
	}
}

// needTool skips when a lint tool is missing locally; CI (CI=true) installs it through
// tools/install-deps.sh, so there a missing tool fails.
func needTool(t *testing.T, name, debPkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed (apt-get install %s; tools/install-deps.sh does it)", name, debPkg)
		}
		t.Skipf("%s not installed locally (apt-get install %s); CI runs this check", name, debPkg)
	}
	return p
}

func TestShellcheckRCScript(t *testing.T) {
	sc := needTool(t, "shellcheck", "shellcheck")
	out, err := exec.Command(sc, "-s", "sh", filepath.Join(repo, rcScript)).CombinedOutput()
	if err != nil {
		t.Fatalf("shellcheck -s sh %s: %v\n%s", rcScript, err, out)
	}
}

// manPages are the manual pages the port installs, relative to the repository.
var manPages = []string{"man/redis-carp-proxy.8", "man/redis-carp-proxy.conf.5"}

// TestManPageLint: every manual page passes mandoc's linter at warning level with no
// output at all.
func TestManPageLint(t *testing.T) {
	mandoc := needTool(t, "mandoc", "mandoc")
	for _, page := range manPages {
		out, err := exec.Command(mandoc, "-T", "lint", "-W", "warning", filepath.Join(repo, page)).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("mandoc -T lint -W warning %s: %v\n%s", page, err, out)
		}
	}
}

// plistFiles returns the files a port install creates with its default options:
// pkg-plist (an @sample line installs the .sample file), the rc.d script USE_RC_SUBR adds
// and, with DOCS on, the PORTDOCS files under DOCSDIR.
func plistFiles(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, "port/pkg-plist"))
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"etc/rc.d/redis_carp_proxy"}
	for _, l := range strings.Split(strings.TrimSpace(plistSub("redis-carp-proxy").Replace(string(b))), "\n") {
		if sm := sampleRe.FindStringSubmatch(l); sm != nil {
			l = sm[4]
		}
		if strings.HasPrefix(l, "@") {
			t.Fatalf("unexpected plist keyword in %q", l)
		}
		files = append(files, l)
	}
	files = append(files, portDocs(t)...)
	sort.Strings(files)
	return files
}

// portDocs returns what PORTDOCS in port/Makefile names, as installed paths below the
// prefix (share/doc/PORTNAME/...). PORTDOCS lists files and directories relative to
// DOCSDIR, globs allowed, a directory standing for everything below it (bsd.port.mk);
// the port copies them from the same places in the source tree.
func portDocs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, "port/Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	var entries []string
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PORTDOCS="); ok {
			entries = strings.Fields(v)
		}
	}
	if len(entries) == 0 {
		t.Fatal("port/Makefile has no PORTDOCS")
	}
	var out []string
	for _, e := range entries {
		matches, err := filepath.Glob(filepath.Join(repo, e))
		if err != nil || len(matches) == 0 {
			t.Fatalf("PORTDOCS %q matches nothing in the source tree", e)
		}
		for _, m := range matches {
			err := filepath.WalkDir(m, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(repo, p)
				out = append(out, "share/doc/redis-carp-proxy/"+filepath.ToSlash(rel))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// TestInstallMatchesPlistAndPackage installs with the Makefile into a DESTDIR, checks the
// file list against pkg-plist, builds the .pkg from it and checks the package's manifest
// and contents against the same list.
func TestInstallMatchesPlistAndPackage(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "redis-carp-proxy")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho stand-in for the cross-compiled binary\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	stage := filepath.Join(tmp, "stage")
	cmd := exec.Command("make", "--no-print-directory", "install-files", "DESTDIR="+stage, "PREFIX=/usr/local", "BIN="+bin)
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install-files: %v\n%s", err, out)
	}
	files, err := stageFiles(stage)
	if err != nil {
		t.Fatal(err)
	}
	var installed []string
	for _, f := range files {
		installed = append(installed, strings.TrimPrefix(f.Path, "/usr/local/"))
	}
	want := plistFiles(t)
	if strings.Join(installed, "\n") != strings.Join(want, "\n") {
		t.Fatalf("installed files:\n%s\npkg-plist (+ rc.d script):\n%s", strings.Join(installed, "\n"), strings.Join(want, "\n"))
	}
	rc, _ := os.ReadFile(filepath.Join(stage, "usr/local/etc/rc.d/redis_carp_proxy"))
	if strings.Contains(string(rc), "%%") || !strings.Contains(string(rc), `procname_proxy="/usr/local/sbin/redis-carp-proxy"`) {
		t.Fatalf("rc.d script not substituted:\n%s", rc)
	}
	for _, f := range files {
		exec := strings.HasSuffix(f.Path, "/sbin/redis-carp-proxy") || strings.Contains(f.Path, "/rc.d/")
		if exec != (f.Mode&0o111 != 0) {
			t.Errorf("%s: mode %v", f.Path, f.Mode)
		}
	}

	pkg := filepath.Join(tmp, "redis-carp-proxy.pkg")
	if err := build(stage, "/usr/local", "arm64", "0.1.0.7", filepath.Join(repo, "port"), pkg); err != nil {
		t.Fatal(err)
	}
	entries, contents := readPkg(t, pkg)
	if len(entries) < 2 || entries[0] != "+COMPACT_MANIFEST" || entries[1] != "+MANIFEST" {
		t.Fatalf("the package must start with +COMPACT_MANIFEST, +MANIFEST; got %v", entries)
	}
	var man struct {
		Name, Origin, Version, Comment, Desc, Maintainer, WWW, ABI, Prefix string
		Flatsize                                                           int64
		Files                                                              map[string]manifestFile
		Scripts                                                            map[string]string
		Messages                                                           []map[string]string
		Users, Groups                                                      []string
	}
	if err := json.Unmarshal(contents["+MANIFEST"], &man); err != nil {
		t.Fatal(err)
	}
	if man.Name != "redis-carp-proxy" || man.Origin != "net/redis-carp-proxy" || man.Version != "0.1.0.7" ||
		man.Comment == "" || man.Desc == "" || man.Maintainer == "" || man.WWW == "" ||
		man.ABI != "FreeBSD:*:aarch64" || man.Prefix != "/usr/local" {
		t.Fatalf("manifest metadata: %+v", man)
	}
	var manFiles, pkgFiles []string
	var flat int64
	for p, mf := range man.Files {
		manFiles = append(manFiles, strings.TrimPrefix(p, "/usr/local/"))
		data, ok := contents[p]
		if !ok {
			t.Errorf("%s listed in +MANIFEST but not in the archive", p)
			continue
		}
		h := sha256.Sum256(data)
		if mf.Sum != hex.EncodeToString(h[:]) {
			t.Errorf("%s: checksum %s does not match the content", p, mf.Sum)
		}
		// pkg registers what the manifest says: without perm the file is mode 0000.
		wantPerm := "0644"
		if strings.HasSuffix(p, "/sbin/redis-carp-proxy") || strings.Contains(p, "/rc.d/") {
			wantPerm = "0755"
		}
		wantGroup := "wheel"
		if strings.HasSuffix(p, "/etc/redis-carp-proxy.conf.sample") {
			// It may hold passwords (finding 15); the unprivileged daemon reads it
			// through its group (finding 17). @sample's copy keeps both (pkg.copy).
			wantPerm, wantGroup = "0640", "redis_carp_proxy"
		}
		if mf.Perm != wantPerm || mf.Uname != "root" || mf.Gname != wantGroup {
			t.Errorf("%s: manifest attributes %+v, want perm %s root:%s", p, mf, wantPerm, wantGroup)
		}
		flat += int64(len(data))
	}
	for _, e := range entries[2:] {
		pkgFiles = append(pkgFiles, strings.TrimPrefix(e, "/usr/local/"))
	}
	sort.Strings(manFiles)
	if strings.Join(manFiles, "\n") != strings.Join(want, "\n") || strings.Join(pkgFiles, "\n") != strings.Join(want, "\n") {
		t.Fatalf("+MANIFEST files:\n%s\narchive files:\n%s\nwant:\n%s", strings.Join(manFiles, "\n"), strings.Join(pkgFiles, "\n"), strings.Join(want, "\n"))
	}
	if flat != man.Flatsize {
		t.Errorf("flatsize %d, files add up to %d", man.Flatsize, flat)
	}
	var compact map[string]any
	if err := json.Unmarshal(contents["+COMPACT_MANIFEST"], &compact); err != nil || compact["files"] != nil || compact["name"] != "redis-carp-proxy" {
		t.Fatalf("+COMPACT_MANIFEST: %v %v", compact, err)
	}
	if strings.Join(man.Users, ",") != "redis_carp_proxy" || strings.Join(man.Groups, ",") != "redis_carp_proxy" {
		t.Errorf("+MANIFEST users %q, groups %q: want the service's", man.Users, man.Groups)
	}
	runPackageScripts(t, man.Scripts)
	runAccountScripts(t, man.Scripts)
	if len(man.Messages) != 2 || man.Messages[1]["type"] != "upgrade" || !strings.Contains(man.Messages[1]["message"], "service redis_carp_proxy upgrade") ||
		man.Messages[0]["type"] != "install" || !strings.Contains(man.Messages[0]["message"], "sysrc redis_carp_proxy_enable=YES") ||
		strings.Contains(man.Messages[0]["message"], "%%") ||
		!strings.Contains(man.Messages[0]["message"], "/usr/local/share/examples/redis-carp-proxy/pf.anchor") {
		t.Fatalf("pkg-message: %v", man.Messages)
	}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		for name, script := range man.Scripts {
			c := exec.Command(sc, "-s", "sh", "-")
			c.Stdin = strings.NewReader(script)
			if out, err := c.CombinedOutput(); err != nil {
				t.Errorf("%s script: %v\n%s", name, err, out)
			}
		}
	}
}

func readPkg(t *testing.T, path string) ([]string, map[string][]byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	contents := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		want := "root:wheel"
		if strings.HasSuffix(h.Name, "/etc/redis-carp-proxy.conf.sample") {
			want = "root:redis_carp_proxy" // the daemon's group reads it (finding 17)
		}
		if h.Uname+":"+h.Gname != want {
			t.Errorf("%s owned by %s:%s, want %s", h.Name, h.Uname, h.Gname, want)
		}
		if strings.HasPrefix(h.Name, "/") && strings.HasSuffix(h.Name, ".conf.sample") && h.Mode != 0o640 {
			t.Errorf("%s: archive mode %04o, want 0640", h.Name, h.Mode)
		}
		names = append(names, h.Name)
		contents[h.Name] = b
	}
	return names, contents
}

// The rc script's contract with rc.subr and daemon(8), as documented in docs/operations.md.
func TestRCScriptContract(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repo, rcScript))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		"# PROVIDE: redis_carp_proxy\n",
		"# REQUIRE: LOGIN pf pfsync\n",
		"# KEYWORD: shutdown\n",
		"rcvar=redis_carp_proxy_enable\n",
		`: "${redis_carp_proxy_config:=%%PREFIX%%/etc/redis-carp-proxy.conf}"`,
		`: "${redis_carp_proxy_user:=redis_carp_proxy}"`,
		`command="/usr/sbin/daemon"`,
		"-r -P ${pidfile} -p ${child_pidfile} -S",
		"-T ${_tag}",
		`redis_carp_proxy_flags=""`,
		`extra_commands="configtest reload upgrade handover handback"`,
		`stop_precmd="redis_carp_proxy_prestop"`,
		`handover --on-stop -c "${_config}"`,
		`handover --undo --after-stop -c "${_config}"`,
		`restart_cmd="redis_carp_proxy_upgrade"`,
		`check-config "${_config}"`,
		`_pid=$(check_pidfile "${child_pidfile}" "${procname_proxy}")`,
		`kill -HUP "${_pid}"`,
		`install -d -o root -g wheel -m 0755 "${rundir}"`,
		`-T ${_tag} ${_uflag}`,
		`if [ "${_user}" != "root" ] && ! id "${_user}" >/dev/null 2>&1; then`,
		"redis_carp_proxy_profiles",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("%s lacks %q", rcScript, want)
		}
	}
}

// At boot /etc/rc does not execute rc scripts, it sources them (libexec/rc/rc.subr,
// run_rc_script: `( set $_arg; . $_file )`), so "$0" is /etc/rc. This runs the installed
// script the same way, from a stand-in /etc/rc with a stub rc.subr, and checks that each
// profile is started once through the script's installed path and /etc/rc never runs
// again (re-running it would boot the system a second time).
func TestRCScriptProfilesAtBoot(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, tc := range []struct {
		name, rcconf, want string
	}{
		{"profiles", `redis_carp_proxy_profiles="a b"` + "\nredis_carp_proxy_b_config=/etc/b.conf\n",
			"rc faststart\n" +
				"run_rc_command faststart config=PREFIX/etc/redis-carp-proxy-a.conf pidfile=/var/run/redis_carp_proxy/a.pid tag=redis-carp-proxy-a daemon-u=redis_carp_proxy su=\n" +
				"run_rc_command faststart config=/etc/b.conf pidfile=/var/run/redis_carp_proxy/b.pid tag=redis-carp-proxy-b daemon-u=redis_carp_proxy su=\n"},
		// The default user is the package's unprivileged one (finding 17): daemon(8) runs
		// the proxy as it (-u), and rc.subr is left no user to su to (daemon(8) is root).
		{"single instance", "",
			"rc faststart\n" +
				"run_rc_command faststart config=PREFIX/etc/redis-carp-proxy.conf pidfile=/var/run/redis_carp_proxy/redis_carp_proxy.pid tag=redis-carp-proxy daemon-u=redis_carp_proxy su=\n"},
		// What needs root (carp-demote yes, pf-reload yes, a port below 1024): no -u.
		{"root", "redis_carp_proxy_user=root\n",
			"rc faststart\n" +
				"run_rc_command faststart config=PREFIX/etc/redis-carp-proxy.conf pidfile=/var/run/redis_carp_proxy/redis_carp_proxy.pid tag=redis-carp-proxy daemon-u=none su=\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			prefix := filepath.Join(dir, "usr", "local")
			log := filepath.Join(dir, "log")
			rcconf := filepath.Join(dir, "rc.conf")
			subr := filepath.Join(dir, "rc.subr")
			if err := os.WriteFile(rcconf, []byte(tc.rcconf), 0o644); err != nil {
				t.Fatal(err)
			}
			// The stub rc.subr: load_rc_config reads the test's rc.conf, run_rc_command
			// records what it would start.
			stub := `load_rc_config() { . "` + rcconf + `"; }
check_pidfile() { :; }
run_rc_command() {
	_c=$1; _u=none
	# shellcheck disable=SC2086
	set -- ${command_args}
	while [ $# -gt 0 ]; do if [ "$1" = -u ]; then _u=$2; fi; shift; done
	echo "run_rc_command ${_c} config=${_config} pidfile=${pidfile} tag=${_tag} daemon-u=${_u} su=${redis_carp_proxy_user}" >> "` + log + `"
}
`
			if err := os.WriteFile(subr, []byte(stub), 0o644); err != nil {
				t.Fatal(err)
			}
			// Install the script as make install-files does, with the stub rc.subr.
			src, err := os.ReadFile(filepath.Join(repo, rcScript))
			if err != nil {
				t.Fatal(err)
			}
			script := strings.ReplaceAll(string(src), "%%PREFIX%%", prefix)
			if !strings.Contains(script, ". /etc/rc.subr\n") {
				t.Fatal("the script does not source /etc/rc.subr")
			}
			script = strings.Replace(script, ". /etc/rc.subr\n", ". "+subr+"\n", 1)
			installed := filepath.Join(prefix, "etc", "rc.d", "redis_carp_proxy")
			if err := os.MkdirAll(filepath.Dir(installed), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(installed, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			// The stand-in /etc/rc: logs each run (a second one is the bug) and sources
			// the script as run_rc_script does; RC_DEPTH stops a runaway recursion.
			rc := filepath.Join(dir, "rc")
			rcBody := `#!/bin/sh
echo "rc $*" >> "` + log + `"
RC_DEPTH=$((${RC_DEPTH:-0} + 1)); export RC_DEPTH
[ "$RC_DEPTH" -gt 2 ] && exit 1
_file="` + installed + `"
_arg=faststart
( set $_arg; . $_file )
`
			if err := os.WriteFile(rc, []byte(rcBody), 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(sh, rc, "faststart").CombinedOutput()
			if err != nil {
				t.Fatalf("boot: %v\n%s", err, out)
			}
			got, _ := os.ReadFile(log)
			want := strings.ReplaceAll(tc.want, "PREFIX", prefix)
			if string(got) != want {
				t.Fatalf("boot ran:\n%s\nwant:\n%s\noutput:\n%s", got, want, out)
			}
		})
	}
}

// runPackageScripts runs the post-install and pre-deinstall scripts the way pkg -r ROOT
// does (libpkg/scripts.c: no chroot, PKG_ROOTDIR=ROOT, PKG_PREFIX from the manifest) with
// a prefix that does not exist on this machine, so a script that ignores PKG_ROOTDIR
// fails instead of touching the host's files.
func runPackageScripts(t *testing.T, scripts map[string]string) {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	const prefix = "/nonexistent-redis-carp-proxy-prefix"
	root := t.TempDir()
	etc := filepath.Join(root, prefix, "etc")
	if err := os.MkdirAll(filepath.Join(etc, "redis-carp-proxy"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"redis-carp-proxy.conf.sample", "redis-carp-proxy/allow.list.sample"} {
		if err := os.WriteFile(filepath.Join(etc, f), []byte("# "+f+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(name string) {
		t.Helper()
		c := exec.Command(sh, "-e", "-c", scripts[name])
		c.Env = append(os.Environ(), "PKG_ROOTDIR="+root, "PKG_PREFIX="+prefix, "PKG_NAME=redis-carp-proxy")
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s script under PKG_ROOTDIR: %v\n%s\n%s", name, err, out, scripts[name])
		}
	}
	run("post-install")
	for _, f := range []string{"redis-carp-proxy.conf", "redis-carp-proxy/allow.list"} {
		if b, err := os.ReadFile(filepath.Join(etc, f)); err != nil || string(b) != "# "+f+".sample\n" {
			t.Fatalf("post-install did not copy %s.sample below PKG_ROOTDIR: %v %q", f, err, b)
		}
	}
	// An edited configuration stays; an untouched copy of the sample goes.
	os.WriteFile(filepath.Join(etc, "redis-carp-proxy.conf"), []byte("listen 198.51.100.100:6379\n"), 0o644)
	run("pre-deinstall")
	if _, err := os.Stat(filepath.Join(etc, "redis-carp-proxy.conf")); err != nil {
		t.Fatalf("pre-deinstall removed the edited configuration: %v", err)
	}
	if _, err := os.Stat(filepath.Join(etc, "redis-carp-proxy/allow.list")); !os.IsNotExist(err) {
		t.Fatalf("pre-deinstall left the unchanged allow.list: %v", err)
	}
}

// runAccountScripts runs the pre-install script as pkg -r ROOT does, with a stand-in
// for pw(8) that keeps ROOT's accounts in a file and records every call: the first run
// creates the group (gid 320), then the user (uid 320, in that group, no login), both in
// ROOT (-R); a second run (a reinstall, an upgrade) creates nothing. The post-deinstall
// script removes nothing and says so.
func runAccountScripts(t *testing.T, scripts map[string]string) {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	root, db, calls := filepath.Join(dir, "root"), filepath.Join(dir, "accounts"), filepath.Join(dir, "calls")
	fake := filepath.Join(dir, "pw")
	// pw -R ROOT CMD NAME ...: groupshow/usershow succeed when NAME is in db.
	if err := os.WriteFile(fake, []byte(`#!/bin/sh
echo "$*" >> "`+calls+`"
[ "$1" = -R ] && shift 2
cmd=$1 name=$2
case $cmd in
groupshow) grep -qx "group $name" "`+db+`" 2>/dev/null ;;
usershow) grep -qx "user $name" "`+db+`" 2>/dev/null ;;
groupadd) echo "group $name" >> "`+db+`" ;;
useradd) echo "user $name" >> "`+db+`" ;;
*) exit 64 ;;
esac
`), 0o755); err != nil {
		t.Fatal(err)
	}
	rootdir := root
	run := func(name string) string {
		t.Helper()
		script, ok := scripts[name]
		if !ok || !strings.Contains(script, pwPath+" ") {
			t.Fatalf("%s script missing or not calling %s:\n%s", name, pwPath, script)
		}
		c := exec.Command(sh, "-e", "-c", strings.ReplaceAll(script, pwPath, fake))
		c.Env = append(os.Environ(), "PKG_ROOTDIR="+rootdir, "PKG_PREFIX=/usr/local")
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		b, _ := os.ReadFile(calls)
		os.Remove(calls)
		return string(b)
	}
	want := "-R " + root + " groupshow redis_carp_proxy\n" +
		"-R " + root + " groupadd redis_carp_proxy -g 320\n" +
		"-R " + root + " usershow redis_carp_proxy\n" +
		"-R " + root + " useradd redis_carp_proxy -u 320 -g 320 -c redis-carp-proxy daemon -d /nonexistent -s /usr/sbin/nologin\n"
	if got := run("pre-install"); got != want {
		t.Fatalf("first install ran pw:\n%s\nwant:\n%s", got, want)
	}
	want = "-R " + root + " groupshow redis_carp_proxy\n-R " + root + " usershow redis_carp_proxy\n"
	if got := run("pre-install"); got != want {
		t.Fatalf("second install ran pw:\n%s\nwant only the lookups:\n%s", got, want)
	}
	if got := run("post-deinstall"); strings.Contains(got, "del") {
		t.Fatalf("post-deinstall removed an account:\n%s", got)
	}
	// pkg without -r: the host's accounts, no -R.
	os.Remove(db)
	rootdir = ""
	if got := run("pre-install"); !strings.HasPrefix(got, "groupshow redis_carp_proxy\ngroupadd redis_carp_proxy -g 320\n") || strings.Contains(got, "-R") {
		t.Fatalf("install without PKG_ROOTDIR ran pw:\n%s", got)
	}
}

// portlint cannot run without a FreeBSD ports tree; these are the checks it (2.23, -AC)
// and a ports committer apply that the port got wrong before, from the Porter's
// Handbook and Mk/Uses/go.mk.
func TestPortConventions(t *testing.T) {
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(repo, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	mk := read("port/Makefile")
	lines := strings.Split(mk, "\n")
	if !strings.HasPrefix(lines[0], "PORTNAME=") {
		t.Errorf("port/Makefile must start with PORTNAME (no comments before it): %q", lines[0])
	}
	vars := map[string]string{}
	for i := 0; i < len(lines); i++ {
		name, v, ok := strings.Cut(lines[i], "=")
		if !ok || strings.ContainsAny(name, " \t$") {
			continue
		}
		for strings.HasSuffix(v, "\\") && i+1 < len(lines) {
			i++
			v = strings.TrimSuffix(v, "\\") + " " + strings.TrimSpace(lines[i])
		}
		vars[name] = strings.Join(strings.Fields(v), " ")
	}
	if m := vars["MAINTAINER"]; !regexp.MustCompile(`^[a-z0-9._-]+@[a-z0-9.-]+\.[a-z]+$`).MatchString(m) ||
		regexp.MustCompile(`example\.(org|com|net)$|\.invalid$|\.test$|\.localhost$`).MatchString(m) {
		t.Errorf("MAINTAINER %q is a placeholder", m)
	}
	if !regexp.MustCompile(`(^| )go:1\.[0-9]+\+,modules( |$)`).MatchString(vars["USES"]) {
		t.Errorf("USES %q: want go:1.NN+,modules (a minimum, not one exact version)", vars["USES"])
	}
	for i, l := range lines {
		if strings.HasPrefix(l, "USE_RC_SUBR=") && !strings.HasPrefix(lines[i-1], "USES=") {
			t.Errorf("USE_RC_SUBR belongs in the USES block, after USES")
		}
	}
	if _, ok := vars["GO_LDFLAGS"]; ok {
		t.Error("GO_LDFLAGS is no go.mk variable: the version would never be stamped")
	}
	bf := vars["GO_BUILDFLAGS"]
	for _, want := range []string{`-ldflags "${STRIP}`, "-X ${GO_MODULE}/proxy.Version=${DISTVERSION}", "-X ${GO_MODULE}/internal/config.Prefix=${PREFIX}"} {
		if !strings.Contains(bf, want) {
			t.Errorf("GO_BUILDFLAGS %q lacks %q", bf, want)
		}
	}
	// The -X targets exist as string variables.
	proxySrc, _ := filepath.Glob(filepath.Join(repo, "proxy", "*.go"))
	var all strings.Builder
	for _, f := range proxySrc {
		b, _ := os.ReadFile(f)
		all.Write(b)
	}
	if !regexp.MustCompile(`(?m)^var Version = "`).MatchString(all.String()) ||
		!regexp.MustCompile(`(?m)^var Prefix = "`).MatchString(read("internal/config/config.go")) {
		t.Error("proxy.Version or config.Prefix is not a string variable -X can set")
	}
	if mod := strings.Fields(strings.SplitN(read("go.mod"), "\n", 2)[0]); len(mod) != 2 || vars["GO_MODULE"] != mod[1] {
		t.Errorf("GO_MODULE %q, go.mod says %v", vars["GO_MODULE"], mod)
	}
	if vars["LICENSE"] != "BSD2CLAUSE" || vars["LICENSE_FILE"] != "${WRKSRC}/LICENSE" {
		t.Errorf("LICENSE %q, LICENSE_FILE %q", vars["LICENSE"], vars["LICENSE_FILE"])
	}
	if l := read("LICENSE"); !strings.Contains(l, "BSD 2-Clause License") || !strings.Contains(l, "The redis-carp-proxy authors") {
		t.Error("LICENSE is not the BSD-2-Clause text of the redis-carp-proxy authors")
	}
	// pkg-message with substitutions: files/pkg-message.in through SUB_FILES.
	if _, err := os.Stat(filepath.Join(repo, "port/pkg-message")); err == nil {
		t.Error("port/pkg-message is shown as is (%%PREFIX%% literally): use files/pkg-message.in")
	}
	if !strings.Contains(" "+vars["SUB_FILES"]+" ", " pkg-message ") || !strings.Contains(read("port/files/pkg-message.in"), "%%PREFIX%%") {
		t.Errorf("SUB_FILES %q must list pkg-message", vars["SUB_FILES"])
	}
	// DOCS and EXAMPLES are options (on by default); the documentation is PORTDOCS,
	// installed only with DOCS on, and every manual page is installed and in the plist.
	if f := strings.Fields(vars["OPTIONS_DEFINE"]); !slices.Contains(f, "DOCS") || !slices.Contains(f, "EXAMPLES") {
		t.Errorf("OPTIONS_DEFINE %q: want DOCS and EXAMPLES", vars["OPTIONS_DEFINE"])
	}
	if vars["PORTDOCS"] == "" || !strings.Contains(mk, "\npost-install-DOCS-on:\n") {
		t.Error("port/Makefile: the documentation goes in PORTDOCS, installed by post-install-DOCS-on")
	}
	pages, _ := filepath.Glob(filepath.Join(repo, "man", "*.[1-9]"))
	if len(pages) != len(manPages) {
		t.Errorf("man/ has %d pages, manPages lists %d: %v", len(pages), len(manPages), pages)
	}
	plist := read("port/pkg-plist")
	for _, page := range pages {
		name := filepath.Base(page)
		sect := name[strings.LastIndex(name, ".")+1:]
		if !strings.Contains(mk, "${INSTALL_MAN} ${WRKSRC}/man/"+name+" \\\n\t\t${STAGEDIR}${PREFIX}/share/man/man"+sect+"\n") {
			t.Errorf("port/Makefile does not install man/%s into share/man/man%s", name, sect)
		}
		if !strings.Contains(plist, "\nshare/man/man"+sect+"/"+name+".gz\n") {
			t.Errorf("pkg-plist lacks share/man/man%s/%s.gz", sect, name)
		}
	}
	// The plist names ETCDIR as %%ETCDIR%% and installs every .sample with @sample.
	for _, l := range strings.Split(strings.TrimSpace(read("port/pkg-plist")), "\n") {
		if strings.Contains(l, "etc/redis-carp-proxy/") {
			t.Errorf("pkg-plist %q: use %%%%ETCDIR%%%%", l)
		}
		if strings.HasSuffix(l, ".sample") && sampleRe.FindStringSubmatch(l) == nil {
			t.Errorf("pkg-plist %q: a .sample file is installed with @sample", l)
		}
	}
	// Lines of at most 80 columns (tabs to the next multiple of 8).
	files, _ := filepath.Glob(filepath.Join(repo, "port", "*"))
	more, _ := filepath.Glob(filepath.Join(repo, "port", "files", "*"))
	for _, f := range append(files, more...) {
		if st, err := os.Stat(f); err != nil || st.IsDir() {
			continue
		}
		if b := filepath.Base(f); b == "UIDs" || b == "GIDs" {
			continue // passwd(5)/group(5) lines, as long as they are in the ports tree
		}
		b, _ := os.ReadFile(f)
		for n, l := range strings.Split(string(b), "\n") {
			col := 0
			for _, r := range l {
				if r == '\t' {
					col = col/8*8 + 8
				} else {
					col++
				}
			}
			if col > 80 {
				t.Errorf("%s:%d: %d columns", strings.TrimPrefix(f, repo+"/"), n+1, col)
			}
		}
	}
}

// pkg-message names the pf anchor sample only when the EXAMPLES option installs it: its
// lines start with %%EXAMPLES%%, which OPTIONS_SUB turns into "@comment " with the option
// off, and apply-slist deletes such lines (Mk/bsd.options.mk, bsd.port.mk).
func TestPkgMessageFollowsExamplesOption(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join(repo, "port/Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^OPTIONS_SUB=\s*yes$`).Match(mk) {
		t.Fatal("port/Makefile does not set OPTIONS_SUB: the EXAMPLES token would stay literal in pkg-message")
	}
	in, err := os.ReadFile(filepath.Join(repo, "port/files/pkg-message.in"))
	if err != nil {
		t.Fatal(err)
	}
	for n, l := range strings.Split(string(in), "\n") {
		if strings.Contains(l, "%%EXAMPLESDIR%%") && !strings.HasPrefix(l, "%%EXAMPLES%%") {
			t.Errorf("pkg-message.in:%d names EXAMPLESDIR on a line the EXAMPLES option does not govern: %q", n+1, l)
		}
	}
	on := applySlist(string(in), "redis-carp-proxy", "/usr/local", true)
	off := applySlist(string(in), "redis-carp-proxy", "/usr/local", false)
	if !strings.Contains(on, "/usr/local/share/examples/redis-carp-proxy/pf.anchor") {
		t.Errorf("EXAMPLES on: the sample anchor is not named:\n%s", on)
	}
	if strings.Contains(off, "share/examples") || strings.Contains(off, "%%") || strings.Contains(off, "@comment") {
		t.Errorf("EXAMPLES off: the message names what is not installed:\n%s", off)
	}
	if !strings.Contains(off, "redis-carp-proxy pf render") {
		t.Errorf("EXAMPLES off: the message does not say how to see the anchor:\n%s", off)
	}
}

// TestReadAccounts: USERS and GROUPS come from UIDs/GIDs lines; a name without a line,
// a malformed line or a value the pre-install script could not carry as one word is
// refused instead of packaged.
func TestReadAccounts(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "UIDs")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := "# comment\nsvc:*:320:320::0:0:Svc daemon:/nonexistent:/usr/sbin/nologin\n"
	a, err := readAccounts(write(good), []string{"svc"}, true)
	if err != nil || len(a) != 1 || a[0].ID != "320" || a[0].GID != "320" || a[0].Gecos != "Svc daemon" || a[0].Shell != "/usr/sbin/nologin" {
		t.Fatalf("good line: %+v %v", a, err)
	}
	for name, tc := range map[string]struct{ file, user string }{
		"missing":    {good, "other"},
		"malformed":  {"svc:*:320:320\n", "svc"},
		"uid":        {"svc:*:x:320::0:0:S:/nonexistent:/usr/sbin/nologin\n", "svc"},
		"gecos":      {"svc:*:320:320::0:0:S $(id):/nonexistent:/usr/sbin/nologin\n", "svc"},
		"shell word": {"svc:*:320:320::0:0:S:/nonexistent:/bin/sh -c x\n", "svc"},
		"name":       {"Svc;x:*:320:320::0:0:S:/nonexistent:/usr/sbin/nologin\n", "Svc;x"},
	} {
		if _, err := readAccounts(write(tc.file), []string{tc.user}, true); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if g, err := readAccounts(write("svc:*:320:\n"), []string{"svc"}, false); err != nil || g[0].ID != "320" {
		t.Fatalf("group: %+v %v", g, err)
	}
	if _, _, err := accountScripts([]Account{{Name: "svc", ID: "1", GID: "1", Home: "/home/svc", Shell: "/usr/sbin/nologin"}}, nil); err == nil {
		t.Error("a home directory to create was accepted")
	}
}

// TestRCScriptUnknownUser: start with a redis_carp_proxy_user that does not exist stops in
// the pre-start check with a message, instead of daemon(8) restarting a child that cannot
// drop to the user every second while "start" reports success. The check comes before
// anything is created (the run directory).
func TestRCScriptUnknownUser(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	prefix := filepath.Join(dir, "usr", "local")
	if err := os.MkdirAll(filepath.Join(prefix, "sbin"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The proxy's check-config: a stand-in that accepts the configuration.
	if err := os.WriteFile(filepath.Join(prefix, "sbin", "redis-carp-proxy"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	subr := filepath.Join(dir, "rc.subr")
	stub := `load_rc_config() { redis_carp_proxy_user=no_such_user_rcp_28; }
check_pidfile() { :; }
install() { echo "install $*"; }
run_rc_command() { ${start_precmd}; }
`
	if err := os.WriteFile(subr, []byte(stub), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(repo, rcScript))
	if err != nil {
		t.Fatal(err)
	}
	script := strings.Replace(strings.ReplaceAll(string(src), "%%PREFIX%%", prefix), ". /etc/rc.subr\n", ". "+subr+"\n", 1)
	path := filepath.Join(dir, "redis_carp_proxy")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sh, path, "start").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no user 'no_such_user_rcp_28'") || strings.Contains(string(out), "install ") {
		t.Fatalf("start with an unknown user: %v\n%s", err, out)
	}
}

package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const repo = "../.."

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
	out, err := exec.Command(sc, "-s", "sh", filepath.Join(repo, "rc.d/redis_carp_proxy.in")).CombinedOutput()
	if err != nil {
		t.Fatalf("shellcheck -s sh rc.d/redis_carp_proxy.in: %v\n%s", err, out)
	}
}

func TestManPageLint(t *testing.T) {
	mandoc := needTool(t, "mandoc", "mandoc")
	out, err := exec.Command(mandoc, "-T", "lint", "-W", "warning", filepath.Join(repo, "man/redis-carp-proxy.8")).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("mandoc -T lint -W warning man/redis-carp-proxy.8: %v\n%s", err, out)
	}
}

func TestPortRCScriptIsTheSame(t *testing.T) {
	a, err1 := os.ReadFile(filepath.Join(repo, "rc.d/redis_carp_proxy.in"))
	b, err2 := os.ReadFile(filepath.Join(repo, "port/files/redis_carp_proxy.in"))
	if err1 != nil || err2 != nil || string(a) != string(b) {
		t.Fatalf("port/files/redis_carp_proxy.in must be a copy of rc.d/redis_carp_proxy.in (%v, %v)", err1, err2)
	}
}

// plistFiles returns the files a port install creates: pkg-plist (an @sample line
// installs the .sample file) plus the rc.d script USE_RC_SUBR adds.
func plistFiles(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, "port/pkg-plist"))
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"etc/rc.d/redis_carp_proxy"}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		l = strings.TrimPrefix(l, "@sample ")
		if strings.HasPrefix(l, "@") {
			t.Fatalf("unexpected plist keyword in %q", l)
		}
		files = append(files, l)
	}
	sort.Strings(files)
	return files
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
		Files                                                              map[string]string
		Scripts                                                            map[string]string
		Messages                                                           []map[string]string
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
	for p, sum := range man.Files {
		manFiles = append(manFiles, strings.TrimPrefix(p, "/usr/local/"))
		data, ok := contents[p]
		if !ok {
			t.Errorf("%s listed in +MANIFEST but not in the archive", p)
			continue
		}
		h := sha256.Sum256(data)
		if sum != "1$"+hex.EncodeToString(h[:]) {
			t.Errorf("%s: checksum %s does not match the content", p, sum)
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
	if !strings.Contains(man.Scripts["post-install"], `cp -p "${PKG_PREFIX}/etc/redis-carp-proxy.conf.sample" "${PKG_PREFIX}/etc/redis-carp-proxy.conf"`) {
		t.Fatalf("post-install does not install the sample config:\n%s", man.Scripts["post-install"])
	}
	if len(man.Messages) != 1 || !strings.Contains(man.Messages[0]["message"], "sysrc redis_carp_proxy_enable=YES") ||
		strings.Contains(man.Messages[0]["message"], "%%PREFIX%%") {
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
		if h.Uname != "root" || h.Gname != "wheel" {
			t.Errorf("%s owned by %s:%s", h.Name, h.Uname, h.Gname)
		}
		names = append(names, h.Name)
		contents[h.Name] = b
	}
	return names, contents
}

// The rc script's contract with rc.subr and daemon(8), as documented in the README.
func TestRCScriptContract(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repo, "rc.d/redis_carp_proxy.in"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		"# PROVIDE: redis_carp_proxy\n",
		"# REQUIRE: NETWORKING pf pfsync",
		"# KEYWORD: shutdown\n",
		"rcvar=redis_carp_proxy_enable\n",
		`: "${redis_carp_proxy_config:=%%PREFIX%%/etc/redis-carp-proxy.conf}"`,
		`: "${redis_carp_proxy_user:=root}"`,
		`command="/usr/sbin/daemon"`,
		"-r -P ${pidfile} -p ${child_pidfile} -S",
		"-T ${_tag}",
		`redis_carp_proxy_flags=""`,
		`extra_commands="configtest reload"`,
		`check-config "${_config}"`,
		`kill -HUP "$(cat "${child_pidfile}")"`,
		"redis_carp_proxy_profiles",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("rc.d/redis_carp_proxy.in lacks %q", want)
		}
	}
}

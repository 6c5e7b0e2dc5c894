// Command mkpkg builds a FreeBSD package (.pkg) from a staged install tree (make
// install-files DESTDIR=stage), without pkg(8) or a ports tree: a gzip-compressed tar
// whose first entries are +COMPACT_MANIFEST and +MANIFEST (JSON, which pkg's UCL parser
// reads), followed by the files under their absolute paths. The metadata comes from the
// port skeleton (port/Makefile COMMENT, pkg-descr, files/pkg-message.in, pkg-plist
// @sample lines).
//
// Usage: go run ./tools/mkpkg -stage build/stage-amd64 -arch amd64 -version 0.1.0 -port port -o out.pkg
package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// abis maps GOARCH to pkg's machine architecture. The "*" version matches any FreeBSD
// major release (pkg compares ABIs with fnmatch(3)): the binary is static and runs on
// 13, 14 and 15.
var abis = map[string]string{"amd64": "FreeBSD:*:amd64", "arm64": "FreeBSD:*:aarch64"}

func main() {
	stage := flag.String("stage", "", "staged install root (DESTDIR)")
	prefix := flag.String("prefix", "/usr/local", "installation prefix inside the stage")
	arch := flag.String("arch", "amd64", "GOARCH of the staged binary (amd64, arm64)")
	version := flag.String("version", "", "package version")
	port := flag.String("port", "port", "port skeleton directory with Makefile, pkg-descr, pkg-plist, files/pkg-message.in")
	out := flag.String("o", "", "output .pkg file")
	flag.Parse()
	if *stage == "" || *version == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "mkpkg: -stage, -version and -o are required")
		os.Exit(2)
	}
	if err := build(*stage, *prefix, *arch, *version, *port, *out); err != nil {
		fmt.Fprintln(os.Stderr, "mkpkg:", err)
		os.Exit(1)
	}
	fmt.Println(*out)
}

func build(stage, prefix, arch, version, port, out string) error {
	meta, err := readPort(port, prefix)
	if err != nil {
		return err
	}
	abi, ok := abis[arch]
	if !ok {
		return fmt.Errorf("unknown arch %q", arch)
	}
	meta.ABI, meta.Version, meta.Prefix = abi, version, prefix
	files, err := stageFiles(stage)
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := writePackage(f, meta, files); err != nil {
		f.Close()
		os.Remove(out)
		return err
	}
	return f.Close()
}

// Meta is the package metadata that is not derived from the files.
type Meta struct {
	Name, Origin, Version, Comment, Maintainer, WWW, ABI, Prefix, Desc string
	Messages                                                           []Message
	Categories, Samples                                                []string // Samples: plist @sample paths, relative to the prefix
	// Attrs: the owner, group and mode pkg-plist gives a file (@sample(OWNER,GROUP,MODE)),
	// by its path relative to the prefix; an empty field keeps root, wheel, the staged mode.
	Attrs map[string]Attr
	// Users and Groups: the port's USERS and GROUPS, as the UIDs and GIDs files define them.
	Users  []Account
	Groups []Account
}

// Message is one pkg-message entry: shown on install, or on upgrade.
type Message struct{ Type, Text string }

// Attr is a plist entry's (owner,group,mode).
type Attr struct{ Owner, Group, Mode string }

// Account is a line of the ports tree's UIDs (name:*:uid:gid:class:0:0:gecos:home:shell)
// or GIDs (name:*:gid:members) file; a group uses Name and ID.
type Account struct {
	Name, ID, GID, Class, Gecos, Home, Shell string
}

// sampleRe is a pkg-plist @sample line, with pkg's optional keyword attributes.
var sampleRe = regexp.MustCompile(`^@sample(?:\(([^,()]*),([^,()]*),([^,()]*)\))? (\S+)$`)

// accountNameRe is what do-users-groups.sh and pw(8) accept unquoted.
var accountNameRe = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)

// readAccounts returns the entries of file (UIDs or GIDs format) named in names, in that
// order; a name missing from the file is an error, as in the ports framework.
func readAccounts(file string, names []string, users bool) ([]Account, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	byName := map[string]Account{}
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Split(l, ":")
		if users && len(f) == 10 {
			byName[f[0]] = Account{Name: f[0], ID: f[2], GID: f[3], Class: f[4], Gecos: f[7], Home: f[8], Shell: f[9]}
		} else if !users && len(f) == 4 {
			byName[f[0]] = Account{Name: f[0], ID: f[2]}
		} else {
			return nil, fmt.Errorf("%s: malformed line %q", file, l)
		}
	}
	var out []Account
	for _, n := range names {
		a, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("%s has no entry for %q", file, n)
		}
		if !accountNameRe.MatchString(n) || !isDigits(a.ID) || (users && !isDigits(a.GID)) {
			return nil, fmt.Errorf("%s: entry %q needs a plain name and numeric ids", file, n)
		}
		// The script quotes the comment; the rest must be single words.
		if users && (strings.ContainsAny(a.Gecos, "\"`$\\") || strings.ContainsAny(a.Class+a.Home+a.Shell, "\"'`$\\ \t")) {
			return nil, fmt.Errorf("%s: entry %q has shell metacharacters", file, n)
		}
		out = append(out, a)
	}
	return out, nil
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

var makeVarRe = regexp.MustCompile(`(?m)^([A-Z_]+)=\s*(.*)$`)

// readPort reads the metadata from the port skeleton.
func readPort(dir, prefix string) (Meta, error) {
	var m Meta
	mk, err := os.ReadFile(filepath.Join(dir, "Makefile"))
	if err != nil {
		return m, err
	}
	vars := map[string]string{}
	for _, sm := range makeVarRe.FindAllStringSubmatch(string(mk), -1) {
		vars[sm[1]] = strings.TrimSpace(sm[2])
	}
	m.Name, m.Comment, m.Maintainer, m.WWW = vars["PORTNAME"], vars["COMMENT"], vars["MAINTAINER"], vars["WWW"]
	m.Categories = strings.Fields(vars["CATEGORIES"])
	if len(m.Categories) > 0 {
		m.Origin = m.Categories[0] + "/" + m.Name
	}
	desc, err := os.ReadFile(filepath.Join(dir, "pkg-descr"))
	if err != nil {
		return m, err
	}
	m.Desc = strings.TrimSpace(string(desc))
	msg, err := os.ReadFile(filepath.Join(dir, "files", "pkg-message.in"))
	if err != nil {
		return m, err
	}
	// Each entry: { type: install|upgrade\n  message: <<EOM ... EOM }.
	for rest := string(msg); ; {
		head, body, ok := strings.Cut(rest, "<<EOM\n")
		if !ok {
			break
		}
		typ := "install"
		if i := strings.LastIndex(head, "type:"); i >= 0 {
			typ = strings.Fields(head[i+len("type:"):])[0]
		}
		body, rest, _ = strings.Cut(body, "\nEOM")
		m.Messages = append(m.Messages, Message{Type: typ, Text: applySlist(body, m.Name, prefix, true)})
	}
	plist, err := os.ReadFile(filepath.Join(dir, "pkg-plist"))
	if err != nil {
		return m, err
	}
	m.Attrs = map[string]Attr{}
	for _, l := range strings.Split(plistSub(m.Name).Replace(string(plist)), "\n") {
		if !strings.HasPrefix(l, "@sample") {
			continue
		}
		sm := sampleRe.FindStringSubmatch(strings.TrimSpace(l))
		if sm == nil {
			return m, fmt.Errorf("%s/pkg-plist: malformed %q", dir, l)
		}
		m.Samples = append(m.Samples, strings.TrimSuffix(sm[4], ".sample"))
		if a := (Attr{sm[1], sm[2], sm[3]}); a != (Attr{}) {
			m.Attrs[sm[4]] = a
		}
	}
	if u := strings.Fields(vars["USERS"]); len(u) > 0 {
		if m.Users, err = readAccounts(filepath.Join(dir, "files", "UIDs"), u, true); err != nil {
			return m, err
		}
	}
	if g := strings.Fields(vars["GROUPS"]); len(g) > 0 {
		if m.Groups, err = readAccounts(filepath.Join(dir, "files", "GIDs"), g, false); err != nil {
			return m, err
		}
	}
	if m.Name == "" || m.Comment == "" || m.Origin == "" {
		return m, fmt.Errorf("%s/Makefile lacks PORTNAME, COMMENT or CATEGORIES", dir)
	}
	return m, nil
}

// plistSub and filesSub replace the ports framework's substitutions as bsd.port.mk
// defines them for PORTNAME name: in pkg-plist relative to the prefix (ETCDIR etc/NAME,
// EXAMPLESDIR share/examples/NAME, PORTEXAMPLES empty: the EXAMPLES option on), in
// files/*.in (SUB_FILES) as absolute paths.
func plistSub(name string) *strings.Replacer {
	return strings.NewReplacer("%%ETCDIR%%", "etc/"+name, "%%EXAMPLESDIR%%", "share/examples/"+name, "%%PORTEXAMPLES%%", "")
}

func filesSub(name, prefix string, examples bool) *strings.Replacer {
	// OPTIONS_SUB: %%EXAMPLES%% is "" with the option on, "@comment " with it off
	// (Mk/bsd.options.mk), %%NO_EXAMPLES%% the other way round.
	on, off := "", "@comment "
	if !examples {
		on, off = off, on
	}
	return strings.NewReplacer("%%PREFIX%%", prefix, "%%ETCDIR%%", prefix+"/etc/"+name,
		"%%EXAMPLESDIR%%", prefix+"/share/examples/"+name, "%%EXAMPLES%%", on, "%%NO_EXAMPLES%%", off)
}

// applySlist is bsd.port.mk's apply-slist for one file: the SUB_LIST substitutions,
// then every line that starts with "@comment " deleted (sed -e '/^@comment /d').
func applySlist(in, name, prefix string, examples bool) string {
	lines := strings.SplitAfter(filesSub(name, prefix, examples).Replace(in), "\n")
	out := lines[:0]
	for _, l := range lines {
		if !strings.HasPrefix(l, "@comment ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// File is one staged file: its absolute installed path and where it is in the stage.
type File struct {
	Path, Src string
	Mode      fs.FileMode
	Size      int64
	Sum       string // hex SHA-256
}

func stageFiles(stage string) ([]File, error) {
	var files []File
	err := filepath.WalkDir(stage, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: only regular files are packaged", p)
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(stage, p)
		sum := sha256.Sum256(b)
		files = append(files, File{Path: "/" + filepath.ToSlash(rel), Src: p, Mode: st.Mode().Perm(), Size: st.Size(), Sum: hex.EncodeToString(sum[:])})
		return nil
	})
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, err
}

// manifestFile is a +MANIFEST files entry in pkg's object form (libpkg/pkg_manifest.c,
// pkg_set_files_from_object): without uname, gname and perm pkg registers the file with
// mode 0000. The object form takes the sum as the bare 64-digit SHA-256, which pkg
// validates as SHA-256 hex (pkg_checksum_validate_fileat).
type manifestFile struct {
	Sum   string `json:"sum"`
	Uname string `json:"uname"`
	Gname string `json:"gname"`
	Perm  string `json:"perm"`
}

// fileAttrs returns f's +MANIFEST entry: root, wheel and the staged mode, unless
// pkg-plist gives the file other attributes.
func fileAttrs(m Meta, f File) manifestFile {
	mf := manifestFile{Sum: f.Sum, Uname: "root", Gname: "wheel", Perm: fmt.Sprintf("%04o", f.Mode.Perm())}
	a := m.Attrs[strings.TrimPrefix(f.Path, strings.TrimSuffix(m.Prefix, "/")+"/")]
	if a.Owner != "" {
		mf.Uname = a.Owner
	}
	if a.Group != "" {
		mf.Gname = a.Group
	}
	if a.Mode != "" {
		mf.Perm = fmt.Sprintf("%04s", strings.TrimLeft(a.Mode, "0"))
	}
	return mf
}

// pwPath is pw(8); the test runs the scripts with a stand-in.
const pwPath = "/usr/sbin/pw"

// accountScripts returns the pre-install script that creates the groups, then the users,
// with pw(8), each only when it does not exist yet (an upgrade or a reinstall keeps them
// and their ids), and the post-deinstall script that, like the ports framework, only says
// they are left. Under pkg -r ROOT (PKG_ROOTDIR) pw works on ROOT's files (-R). This is
// what the ports framework generates for USERS and GROUPS (Mk/Scripts/do-users-groups.sh),
// which pkg runs before it extracts the files, so files can belong to the new group.
func accountScripts(users, groups []Account) (install, deinstall string, err error) {
	var in, de strings.Builder
	pw := `pw() {
	if [ -n "${PKG_ROOTDIR}" ] && [ "${PKG_ROOTDIR}" != "/" ]; then
		` + pwPath + ` -R "${PKG_ROOTDIR}" "$@"
	else
		` + pwPath + ` "$@"
	fi
}
`
	in.WriteString(pw)
	de.WriteString(pw)
	for _, g := range groups {
		fmt.Fprintf(&in, `if pw groupshow %[1]s >/dev/null 2>&1; then
	echo "Using existing group '%[1]s'."
else
	echo "Creating group '%[1]s' with gid '%[2]s'."
	pw groupadd %[1]s -g %[2]s
fi
`, g.Name, g.ID)
		fmt.Fprintf(&de, `if pw groupshow %[1]s >/dev/null 2>&1; then
	echo "==> You should manually remove the \"%[1]s\" group."
fi
`, g.Name)
	}
	for _, u := range users {
		switch u.Home {
		case "/", "/nonexistent", "/var/empty":
		default:
			return "", "", fmt.Errorf("user %s: home %s: only /nonexistent, /var/empty or / (nothing to create)", u.Name, u.Home)
		}
		class := ""
		if u.Class != "" {
			class = " -L " + u.Class
		}
		fmt.Fprintf(&in, `if pw usershow %[1]s >/dev/null 2>&1; then
	echo "Using existing user '%[1]s'."
else
	echo "Creating user '%[1]s' with uid '%[2]s'."
	pw useradd %[1]s -u %[2]s -g %[3]s%[4]s -c "%[5]s" -d %[6]s -s %[7]s
fi
`, u.Name, u.ID, u.GID, class, u.Gecos, u.Home, u.Shell)
		fmt.Fprintf(&de, `if pw usershow %[1]s >/dev/null 2>&1; then
	echo "==> You should manually remove the \"%[1]s\" user."
fi
`, u.Name)
	}
	return in.String(), de.String(), nil
}

// manifests returns +COMPACT_MANIFEST and +MANIFEST.
func manifests(m Meta, files []File) (compact, full []byte, err error) {
	var flat int64
	fileMap := map[string]manifestFile{}
	for _, f := range files {
		flat += f.Size
		fileMap[f.Path] = fileAttrs(m, f)
	}
	base := map[string]any{
		"name": m.Name, "origin": m.Origin, "version": m.Version, "comment": m.Comment,
		"maintainer": m.Maintainer, "www": m.WWW, "abi": m.ABI, "prefix": m.Prefix,
		"flatsize": flat, "desc": m.Desc, "licenselogic": "single", "licenses": []string{"BSD2CLAUSE"},
		"categories": m.Categories,
	}
	if compact, err = json.Marshal(base); err != nil {
		return nil, nil, err
	}
	base["files"] = fileMap
	for _, msg := range m.Messages {
		ms, _ := base["messages"].([]map[string]string)
		base["messages"] = append(ms, map[string]string{"message": msg.Text, "type": msg.Type})
	}
	if len(m.Samples) > 0 {
		var post, pre strings.Builder
		for _, s := range m.Samples {
			// pkg -r ROOT runs the scripts outside ROOT (without a chroot): every path is
			// below PKG_ROOTDIR ("/" otherwise), as the ports' @sample Lua scripts do.
			f := `"${PKG_ROOTDIR}${PKG_PREFIX}/` + s + `"`
			fmt.Fprintf(&post, "if [ ! -f %s ]; then cp -p %s %s; fi\n", f, strings.TrimSuffix(f, `"`)+`.sample"`, f)
			fmt.Fprintf(&pre, "if cmp -s %s %s; then rm -f %s; fi\n", f, strings.TrimSuffix(f, `"`)+`.sample"`, f)
		}
		base["scripts"] = map[string]string{"post-install": post.String(), "pre-deinstall": pre.String()}
	}
	if len(m.Users)+len(m.Groups) > 0 {
		install, deinstall, err := accountScripts(m.Users, m.Groups)
		if err != nil {
			return nil, nil, err
		}
		scripts, _ := base["scripts"].(map[string]string)
		if scripts == nil {
			scripts = map[string]string{}
		}
		scripts["pre-install"], scripts["post-deinstall"] = install, deinstall
		base["scripts"] = scripts
		// Names only, as pkg records them (libpkg/pkg_manifest.c: "users" and "groups"
		// arrays of strings, pkg_adduser/pkg_addgroup); pkg creates nothing from them.
		var users, groups []string
		for _, u := range m.Users {
			users = append(users, u.Name)
		}
		for _, g := range m.Groups {
			groups = append(groups, g.Name)
		}
		if len(users) > 0 {
			base["users"] = users
		}
		if len(groups) > 0 {
			base["groups"] = groups
		}
	}
	full, err = json.MarshalIndent(base, "", "  ")
	return compact, full, err
}

// writePackage writes the .pkg: gzip(tar(+COMPACT_MANIFEST, +MANIFEST, files...)).
func writePackage(w io.Writer, m Meta, files []File) error {
	compact, full, err := manifests(m, files)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	mtime := time.Unix(0, 0)
	hdr := func(name string, mode fs.FileMode, size int64) *tar.Header {
		return &tar.Header{Name: name, Mode: int64(mode), Size: size, ModTime: mtime, Uname: "root", Gname: "wheel", Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	}
	for _, meta := range []struct {
		name string
		data []byte
	}{{"+COMPACT_MANIFEST", compact}, {"+MANIFEST", full}} {
		if err := tw.WriteHeader(hdr(meta.name, 0o644, int64(len(meta.data)))); err != nil {
			return err
		}
		if _, err := tw.Write(meta.data); err != nil {
			return err
		}
	}
	for _, f := range files {
		h := hdr(f.Path, f.Mode, f.Size)
		// The archive entry says what the manifest says.
		a := fileAttrs(m, f)
		mode, err := strconv.ParseUint(a.Perm, 8, 32)
		if err != nil {
			return fmt.Errorf("%s: mode %q: %w", f.Path, a.Perm, err)
		}
		h.Uname, h.Gname, h.Mode = a.Uname, a.Gname, int64(mode)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		src, err := os.Open(f.Src)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, src)
		src.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", path.Clean(f.Src), err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

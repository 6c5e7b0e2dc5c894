package redissetup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/atomicfile"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/rcconf"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/textdiff"
)

// Flavor is the server package an appliance runs: the redis or the valkey port. They
// differ only in names; the configuration keys are the same.
type Flavor struct {
	Name string // "redis" or "valkey": rc script, rc variables, user and group, paths
}

// Flavors are the supported server packages.
var Flavors = map[string]Flavor{"redis": {Name: "redis"}, "valkey": {Name: "valkey"}}

// ConfPath is the instance configuration the port's rc script reads for profile port.
func (f Flavor) ConfPath(port int) string {
	return fmt.Sprintf("/usr/local/etc/%s-%d.conf", f.Name, port)
}

// DefaultConfPath is the package's own configuration, unused once profiles are set.
func (f Flavor) DefaultConfPath() string { return "/usr/local/etc/" + f.Name + ".conf" }

// DataDir is the instance's data directory (dir).
func (f Flavor) DataDir(port int) string { return fmt.Sprintf("/var/db/%s/%d", f.Name, port) }

// PidFile is where the rc script expects the pid of profile port.
func (f Flavor) PidFile(port int) string { return fmt.Sprintf("/var/run/%s/%d.pid", f.Name, port) }

// LogFile is the instance's log file.
func (f Flavor) LogFile(port int) string {
	return fmt.Sprintf("/var/log/%s/%s-%d.log", f.Name, f.Name, port)
}

// RCConfPath is the rc.conf.d file holding the flavor's rc variables.
func (f Flavor) RCConfPath() string { return "/etc/rc.conf.d/" + f.Name }

// Options configures Init.
type Options struct {
	Ports []int  // instance ports (one rc profile each); required
	Bind  string // the host's physical address (never the VIP); required
	// Root is prepended to every path written (default "/"): build a host's tree
	// elsewhere, or test.
	Root   string
	DryRun bool   // print a unified diff of every change instead of writing
	Flavor string // "redis" (default) or "valkey"
	// DefaultConf says what to do with the package's default configuration file when it
	// exists: "keep" or "remove" (moved to a backup). Empty is an error if it exists.
	DefaultConf string
	NodeTimeout time.Duration // cluster-node-timeout; default 5s
	Out         io.Writer     // progress and diffs; default io.Discard
	// PassFile is the cluster password file (auth.go; default DefaultPassFile), read, or
	// created with a random password; NoAuth writes instances without a password.
	PassFile string
	NoAuth   bool

	randPass func() (string, error) // default newPassword

	runner cmdrun.Runner                            // chown; default cmdrun.Exec
	lookup func(name string) (account, bool, error) // the server's user; default os/user
	euid   func() int                               // default os.Geteuid
}

// fileChange is one file Init writes or removes.
type fileChange struct {
	target   string // path on the target system
	old      []byte // current content; nil if absent
	new      []byte // wanted content; nil to remove
	existed  bool
	mode     fs.FileMode
	notes    []string
	isRemove bool
	secret   bool   // the content is the password: never shown in a diff
	mask     string // the password, replaced in diffs
}

// Init writes the instance configurations, rc.conf.d settings and data directories.
func Init(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	fl := Flavors[o.Flavor]
	var changes []*fileChange
	pass, confMode := "", fs.FileMode(0o644)
	if !o.NoAuth {
		p, passChange, err := o.password()
		if err != nil {
			return err
		}
		pass, confMode = p, 0o640
		if passChange != nil {
			changes = append(changes, passChange)
		}
	}
	for _, p := range o.Ports {
		c, err := o.load(fl.ConfPath(p), confMode)
		if err != nil {
			return err
		}
		c.new = []byte(instanceConfig(fl, p, o.Bind, o.NodeTimeout) + authConfig(o.PassFile, pass))
		c.mask = pass
		changes = append(changes, c)
	}
	rcPath := fl.RCConfPath()
	if st, err := os.Stat(o.real(rcPath)); err == nil && st.IsDir() {
		// rc.subr also reads every file of a directory of that name.
		rcPath += "/redis-carp-proxy"
		fmt.Fprintf(o.Out, "note: %s is a directory: the settings go to %s (files there that set %s_profiles too may override it)\n", fl.RCConfPath(), rcPath, fl.Name)
	}
	rc, err := o.load(rcPath, 0o644)
	if err != nil {
		return err
	}
	rc.new, rc.notes = rcConf(fl, rc.old, o.Ports)
	changes = append(changes, rc)

	def, err := o.load(fl.DefaultConfPath(), 0)
	if err != nil {
		return err
	}
	if def.existed {
		switch o.DefaultConf {
		case "":
			return fmt.Errorf("%w (%s)", ErrDefaultConfChoice, fl.DefaultConfPath())
		case "keep":
			fmt.Fprintf(o.Out, "keep %s (as asked; the rc script starts only the profiles' files while %s_profiles is set)\n", fl.DefaultConfPath(), fl.Name)
		case "remove":
			def.isRemove = true
			changes = append(changes, def)
		}
	}

	if o.DryRun {
		fmt.Fprintf(o.Out, "dry run (%s, root %s): nothing is written\n", fl.Name, o.Root)
	}
	changed := 0
	for _, c := range changes {
		n, err := o.apply(c)
		if err != nil {
			return err
		}
		changed += n
	}
	n, err := o.dirs(ctx, fl)
	if err != nil {
		return err
	}
	changed += n
	if !o.NoAuth {
		if n, err = o.ownConfigs(ctx, fl); err != nil {
			return err
		}
		changed += n
	}
	switch {
	case changed == 0:
		fmt.Fprintln(o.Out, "nothing to change")
	case o.DryRun:
		fmt.Fprintf(o.Out, "%d change(s) would be made; run again without --dry-run to apply\n", changed)
	default:
		if !o.NoAuth {
			fmt.Fprintf(o.Out, "the instances require the password in %s: copy it (mode 0600) to the same path on every other host before redis init runs there; the proxy reads it with backend-password-file %s\n", o.PassFile, o.PassFile)
		}
		fmt.Fprintf(o.Out, "next: service %s start, then on one host: redis-carp-proxy cluster create HOST:PORT ... (every instance of every host)\n", fl.Name)
	}
	return nil
}

func (o *Options) defaults() error {
	if o.Flavor == "" {
		o.Flavor = "redis"
	}
	if _, ok := Flavors[o.Flavor]; !ok {
		return fmt.Errorf("%w: --flavor %q: want redis or valkey", ErrBadOptions, o.Flavor)
	}
	if len(o.Ports) == 0 {
		return fmt.Errorf("%w: --ports is required (for example --ports 7000,7001)", ErrBadOptions)
	}
	seen := map[int]bool{}
	for _, p := range o.Ports {
		// The cluster bus listens on port+10000.
		if p < 1 || p > 65535-10000 {
			return fmt.Errorf("%w: port %d: want 1..55535 (the cluster bus uses port+10000)", ErrBadOptions, p)
		}
		if seen[p] || seen[p+10000] || seen[p-10000] {
			return fmt.Errorf("%w: port %d given twice or clashes with another port's cluster bus port", ErrBadOptions, p)
		}
		seen[p] = true
	}
	if o.Bind == "" {
		return fmt.Errorf("%w: --bind is required: the host's physical address (not the VIP)", ErrBadOptions)
	}
	a, err := netip.ParseAddr(o.Bind)
	if err != nil {
		return fmt.Errorf("%w: --bind %q: %v", ErrBadOptions, o.Bind, err)
	}
	if a.IsUnspecified() {
		return fmt.Errorf("%w: --bind %s would also bind the VIP: give the host's physical address", ErrBadOptions, o.Bind)
	}
	if o.DefaultConf != "" && o.DefaultConf != "keep" && o.DefaultConf != "remove" {
		return fmt.Errorf("%w: --default-conf %q: want keep or remove", ErrBadOptions, o.DefaultConf)
	}
	if o.NodeTimeout == 0 {
		o.NodeTimeout = 5 * time.Second
	}
	if o.NodeTimeout < 100*time.Millisecond {
		return fmt.Errorf("%w: --node-timeout %s: want at least 100ms", ErrBadOptions, o.NodeTimeout)
	}
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.runner == nil {
		o.runner = cmdrun.Exec{}
	}
	if o.lookup == nil {
		o.lookup = lookupAccount
	}
	if o.euid == nil {
		o.euid = os.Geteuid
	}
	if o.PassFile == "" {
		o.PassFile = DefaultPassFile
	}
	if !filepath.IsAbs(o.PassFile) {
		return fmt.Errorf("%w: --password-file %q: want an absolute path", ErrBadOptions, o.PassFile)
	}
	if o.randPass == nil {
		o.randPass = newPassword
	}
	return nil
}

func (o *Options) real(target string) string { return filepath.Join(o.Root, target) }

func (o *Options) load(target string, mode fs.FileMode) (*fileChange, error) {
	c := &fileChange{target: target, mode: mode}
	b, err := os.ReadFile(o.real(target))
	switch {
	case err == nil:
		c.old, c.existed = b, true
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, fmt.Errorf("redis init: read %s: %w", o.real(target), err)
	}
	return c, nil
}

// apply writes (or, in a dry run, shows) one change; it returns 1 if something changed.
func (o *Options) apply(c *fileChange) (int, error) {
	for _, n := range c.notes {
		fmt.Fprintf(o.Out, "note: %s: %s\n", c.target, n)
	}
	real := o.real(c.target)
	if !c.isRemove && c.existed && bytes.Equal(c.old, c.new) {
		fmt.Fprintf(o.Out, "unchanged %s\n", c.target)
		return 0, nil
	}
	if o.DryRun {
		mask := func(b []byte) string {
			if c.mask == "" {
				return string(b)
			}
			return strings.ReplaceAll(string(b), c.mask, "<"+o.PassFile+">")
		}
		switch {
		case c.secret:
			fmt.Fprintf(o.Out, "would create %s (mode %04o, a new random password)\n", c.target, c.mode)
			return 1, nil
		case c.isRemove:
			fmt.Fprintf(o.Out, "would remove %s (moved to %s)\n", c.target, o.backupName(c.target))
		case c.existed:
			fmt.Fprintf(o.Out, "would update %s (previous kept as %s)\n", c.target, o.backupName(c.target))
			io.WriteString(o.Out, textdiff.Unified(c.target, c.target+" (new)", mask(c.old), mask(c.new)))
		default:
			fmt.Fprintf(o.Out, "would create %s\n", c.target)
			io.WriteString(o.Out, textdiff.Unified("/dev/null", c.target, "", mask(c.new)))
		}
		return 1, nil
	}
	if c.isRemove {
		bak := o.backupName(c.target)
		if err := os.Rename(real, o.real(bak)); err != nil {
			return 0, fmt.Errorf("redis init: remove %s: %w", real, err)
		}
		fmt.Fprintf(o.Out, "removed %s (moved to %s)\n", c.target, bak)
		return 1, nil
	}
	if err := os.MkdirAll(filepath.Dir(real), 0o755); err != nil {
		return 0, fmt.Errorf("redis init: %w", err)
	}
	msg := "created " + c.target
	if c.secret {
		msg += fmt.Sprintf(" (mode %04o, a new random password)", c.mode)
	}
	write := atomicfile.Write
	if c.mode&0o077 != 0o044 {
		write = atomicfile.WriteSecret // 0600/0640: whatever the old file's mode
	}
	if c.existed {
		bak := o.backupName(c.target)
		if err := write(o.real(bak), c.old, c.mode); err != nil {
			return 0, fmt.Errorf("redis init: back up %s: %w", real, err)
		}
		msg = "updated " + c.target + ", previous kept as " + bak
	}
	if err := write(real, c.new, c.mode); err != nil {
		return 0, fmt.Errorf("redis init: write %s: %w", real, err)
	}
	fmt.Fprintln(o.Out, msg)
	return 1, nil
}

// backupName returns the first of target.bak, target.bak.1, … that does not exist, so an
// older backup is never overwritten.
func (o *Options) backupName(target string) string {
	name := target + ".bak"
	for i := 1; ; i++ {
		if _, err := os.Lstat(o.real(name)); errors.Is(err, fs.ErrNotExist) {
			return name
		}
		name = fmt.Sprintf("%s.bak.%d", target, i)
	}
}

// dirs creates the data, pid and log directories owned by the server's user; it returns
// how many it created or re-owned.
func (o *Options) dirs(ctx context.Context, fl Flavor) (int, error) {
	type dir struct {
		target string
		mode   fs.FileMode
	}
	ds := []dir{{filepath.Dir(fl.PidFile(0)), 0o755}, {filepath.Dir(fl.LogFile(0)), 0o755}}
	for _, p := range o.Ports {
		ds = append(ds, dir{fl.DataDir(p), 0o750})
	}
	acct, found, err := o.lookup(fl.Name)
	if err != nil {
		return 0, fmt.Errorf("redis init: look up user %s: %w", fl.Name, err)
	}
	if found && o.euid() != 0 {
		fmt.Fprintf(o.Out, "note: not running as root: directory owners are not changed to %s:%s\n", fl.Name, fl.Name)
		found = false
	} else if !found {
		fmt.Fprintf(o.Out, "note: user %s does not exist here: directories are left owned by the current user (install the %s package, which creates the user, and run redis init again)\n", fl.Name, fl.Name)
	}
	owner := fl.Name + ":" + fl.Name
	changed := 0
	for _, d := range ds {
		real := o.real(d.target)
		st, err := os.Stat(real)
		exists := err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return changed, fmt.Errorf("redis init: %w", err)
		}
		if exists && !st.IsDir() {
			return changed, fmt.Errorf("redis init: %s exists and is not a directory", real)
		}
		if !exists {
			changed++
			if o.DryRun {
				fmt.Fprintf(o.Out, "would create directory %s (%04o)\n", d.target, d.mode)
			} else {
				if err := os.MkdirAll(real, 0o755); err != nil {
					return changed, fmt.Errorf("redis init: %w", err)
				}
				if err := os.Chmod(real, d.mode); err != nil {
					return changed, fmt.Errorf("redis init: %w", err)
				}
				fmt.Fprintf(o.Out, "created directory %s (%04o)\n", d.target, d.mode)
			}
		}
		if !found || (exists && ownedBy(st, acct)) {
			continue
		}
		if exists {
			changed++ // a new directory is counted already
		}
		if o.DryRun {
			fmt.Fprintf(o.Out, "would chown %s %s\n", owner, d.target)
			continue
		}
		if _, err := o.runner.Run(ctx, nil, "chown", owner, real); err != nil {
			return changed, fmt.Errorf("redis init: chown %s %s: %w", owner, real, err)
		}
		fmt.Fprintf(o.Out, "chown %s %s\n", owner, d.target)
	}
	return changed, nil
}

func ownedBy(st fs.FileInfo, a account) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && int(sys.Uid) == a.uid && int(sys.Gid) == a.gid
}

// instanceConfig is the configuration of one cluster instance.
func instanceConfig(fl Flavor, port int, bind string, nodeTimeout time.Duration) string {
	var b strings.Builder
	p := strconv.Itoa(port)
	fmt.Fprintf(&b, `# %s Cluster instance %d, written by "redis-carp-proxy redis init".
# Started by the %s rc script as profile %d (%s_profiles in %s).
# Running redis init again rewrites this file and keeps the previous one as a .bak file.
port %d
# The host's physical address only: the proxy owns the CARP VIP. Outgoing cluster bus
# connections use it as their source too, so peers never see the VIP.
bind %s
bind-source-addr %s
# Peers and the proxies connect from other hosts; restrict access with pf.
protected-mode no
daemonize yes
pidfile %s
logfile %s
dir %s
cluster-enabled yes
cluster-config-file nodes-%s.conf
cluster-node-timeout %d
appendonly yes
`, titleCase(fl.Name), port, fl.Name, port, fl.Name, fl.RCConfPath(), port, bind, bind,
		fl.PidFile(port), fl.LogFile(port), fl.DataDir(port), p, nodeTimeout.Milliseconds())
	return b.String()
}

func titleCase(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// rcConf returns old (an rc.conf.d file) with NAME_enable="YES" and NAME_profiles set to
// ports under rcconf's rule (other lines untouched), and notes on what was replaced.
func rcConf(fl Flavor, old []byte, ports []int) ([]byte, []string) {
	ps := make([]string, len(ports))
	for i, p := range ports {
		ps[i] = strconv.Itoa(p)
	}
	content := string(old)
	if content == "" {
		content = "# Written by redis-carp-proxy redis init: one " + fl.Name + " profile per cluster instance.\n"
	}
	var notes []string
	if prev, ok := rcconf.Get(content, fl.Name+"_profiles"); ok {
		var dropped []string
		for _, p := range strings.Fields(prev) {
			if !slices.Contains(ps, p) {
				dropped = append(dropped, p)
			}
		}
		if len(dropped) > 0 {
			notes = append(notes, fmt.Sprintf("profiles %s are no longer started by the rc script (their files are left in place)", strings.Join(dropped, " ")))
		}
	}
	for _, w := range []struct{ name, value string }{
		{fl.Name + "_enable", "YES"},
		{fl.Name + "_profiles", strings.Join(ps, " ")},
	} {
		var n []string
		content, n = rcconf.Set(content, w.name, w.value, rcconf.Quoted)
		notes = append(notes, n...)
	}
	return []byte(content), notes
}

// authConfig is the part of an instance configuration that makes it require the cluster
// password ("" with NoAuth).
func authConfig(passFile, pass string) string {
	if pass == "" {
		return ""
	}
	return fmt.Sprintf(`# The cluster password, the same on every host (from %s):
# clients, the proxy (backend-password-file) and replicas authenticate with it.
requirepass %s
masterauth %s
`, passFile, pass, pass)
}

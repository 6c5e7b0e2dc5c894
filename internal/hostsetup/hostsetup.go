// Package hostsetup prepares a FreeBSD host for redis-carp-proxy, idempotently: kernel
// modules (now and at boot), pf/pfsync/pflog in rc.conf.d, net.inet.carp.preempt, the
// anchor hook in /etc/pf.conf (or the file rc.conf's pf_rules names), the allowlist
// file, and finally the anchor and its table.
// Files are replaced atomically with a backup; commands go through a cmdrun.Runner. With
// Root set, every file is read and written under that directory, so the whole set-up is
// tested on any OS against golden trees.
package hostsetup

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/atomicfile"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/rcconf"
	"github.com/redis-carp-proxy/redis-carp-proxy/pfctl"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/textdiff"
)

// Paths of the files setup manages, relative to Root.
const (
	LoaderConf = "/boot/loader.conf.d/redis-carp-proxy.conf"
	RCConfDir  = "/etc/rc.conf.d"
	SysctlConf = "/etc/sysctl.conf"
	PFConf     = "/etc/pf.conf" // unless rc.conf sets pf_rules (pfrules.go)
)

const managed = "# Managed by `redis-carp-proxy setup`; rerun it after changing the configuration."

// Setup is one run of the host set-up.
type Setup struct {
	Config     *config.Config
	ConfigFile string
	Root       string // "/" for the running system
	DryRun     bool   // print diffs and commands, change nothing
	// Live runs the commands that act on the running system (kldload, sysctl, service,
	// pfctl); without it they are printed as skipped. The CLI sets it when Root is "/".
	Live bool
	// WriteCarp writes this host's CARP addresses into /etc/rc.conf.d/network (carp.go).
	WriteCarp bool
	Runner    cmdrun.Runner
	Out       io.Writer
	Log       *slog.Logger
	Now       func() time.Time // for backup names
}

// Run performs every step, stopping at the first error.
func (s *Setup) Run(ctx context.Context) error {
	if s.Log == nil {
		s.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s.Log = s.Log.With("component", "setup")
	if s.Now == nil {
		s.Now = time.Now
	}
	p, err := pfctl.FromConfig(s.Config, s.ConfigFile)
	if err != nil {
		return err
	}
	if peer := s.Config.PFSyncPeer; peer != "" {
		// It goes into an rc.conf.d file that sh sources: only a plain address.
		if _, err := netip.ParseAddr(peer); err != nil {
			return fmt.Errorf("setup: pfsync-peer %q: %w", peer, ErrBadPeer)
		}
	}
	// 1. Kernel modules at boot, then now.
	if err := s.kernelModules(ctx, p); err != nil {
		return err
	}
	// 2. rc.conf settings for pf, pflog and pfsync.
	pfsyncChanged, err := s.rcConfD(p)
	if err != nil {
		return err
	}
	// 3. The CARP addresses: printed, written with WriteCarp (carp.go).
	if err := s.carp(ctx); err != nil {
		return err
	}
	// 4. Preemption, persistently and now.
	if err := s.preempt(ctx); err != nil {
		return err
	}
	// 5. The anchor's files and the hook in pf.conf.
	rules, pfConf, pfChanged, err := s.pfFiles(p)
	if err != nil {
		return err
	}
	// 6. pf running with the new pf.conf, pflog and pfsync up, then the anchor and its table.
	return s.startPF(ctx, p, rules, pfConf, pfChanged, pfsyncChanged)
}

// kernelModules writes the loader.conf.d file that loads carp, pf, pfsync (and pflog
// when pf-log is on) at boot, and loads those not loaded now.
func (s *Setup) kernelModules(ctx context.Context, p pfctl.Params) error {
	modules := []string{"carp", "pf", "pfsync"}
	if p.Log {
		modules = append(modules, "pflog")
	}
	var loader strings.Builder
	loader.WriteString(managed + "\n")
	for _, m := range modules {
		fmt.Fprintf(&loader, "%s_load=\"YES\"\n", m)
	}
	if _, err := s.writeFile(LoaderConf, loader.String()); err != nil {
		return err
	}
	for _, m := range modules {
		if _, err := s.probe(ctx, "kldstat", "-q", "-m", m); err == nil {
			s.say("module %s: loaded", m)
			continue
		}
		if err := s.act(ctx, nil, "kldload", m); err != nil {
			return err
		}
	}
	return nil
}

// rcConfD enables pf, pflog (with pf-log) and pfsync (with pfsync-interface, and its
// peer) in rc.conf.d files: rc.subr reads /etc/rc.conf.d/NAME for service NAME after
// /etc/rc.conf, so these win. It reports whether the pfsync file changed, so that
// pfsync is started with its new settings.
func (s *Setup) rcConfD(p pfctl.Params) (pfsyncChanged bool, err error) {
	if _, err := s.editFile(RCConfDir+"/pf", func(c string) string { return s.setVar(c, "pf_enable", "YES", rcconf.Quoted) }); err != nil {
		return false, err
	}
	if p.Log {
		if _, err := s.editFile(RCConfDir+"/pflog", func(c string) string { return s.setVar(c, "pflog_enable", "YES", rcconf.Quoted) }); err != nil {
			return false, err
		}
	}
	if p.SyncIf == "" {
		s.say("pfsync: not enabled (pfsync-interface is empty)")
		return false, nil
	}
	return s.editFile(RCConfDir+"/pfsync", func(c string) string {
		c = s.setVar(c, "pfsync_enable", "YES", rcconf.Quoted)
		c = s.setVar(c, "pfsync_syncdev", p.SyncIf, rcconf.Quoted)
		if s.Config.PFSyncPeer != "" {
			c = s.setVar(c, "pfsync_syncpeer", s.Config.PFSyncPeer, rcconf.Quoted)
		}
		return c
	})
}

// preempt sets net.inet.carp.preempt=1 in sysctl.conf and, unless it already is 1, in
// the running kernel.
func (s *Setup) preempt(ctx context.Context) error {
	if _, err := s.editFile(SysctlConf, func(c string) string { return s.setVar(c, "net.inet.carp.preempt", "1", rcconf.Bare) }); err != nil {
		return err
	}
	if out, err := s.probe(ctx, "sysctl", "-n", "net.inet.carp.preempt"); err == nil && strings.TrimSpace(string(out)) == "1" {
		s.say("sysctl net.inet.carp.preempt: already 1")
		return nil
	}
	return s.act(ctx, nil, "sysctl", "net.inet.carp.preempt=1")
}

// pfFiles writes the anchor's rules into the file pf.conf loads them from at boot, the
// allowlist file the anchor's table loads when it is missing (pfctl refuses a table
// whose file is missing), and the hook into the pf.conf rc.d/pf loads (pf_rules), before
// its first filter rule. It returns the rules, that pf.conf's name, and whether it
// changed.
func (s *Setup) pfFiles(p pfctl.Params) (rules, pfConf string, pfChanged bool, err error) {
	rules, err = pfctl.Render(p)
	if err != nil {
		return "", "", false, err
	}
	if _, err := s.writeFile(p.AnchorFile, rules); err != nil {
		return "", "", false, err
	}
	if _, err := os.Stat(s.path(p.AllowFile)); os.IsNotExist(err) {
		if _, err := s.writeFile(p.AllowFile, pfctl.AllowListHeader); err != nil {
			return "", "", false, err
		}
	}
	// rc.d/pf loads ${pf_rules}, /etc/pf.conf only by default.
	pfConf, err = s.pfRules()
	if err != nil {
		return "", "", false, err
	}
	pfChanged, err = s.editFile(pfConf, func(c string) string {
		if c == "" {
			c = managed + "\n" + strings.Join(hookLines(p.Anchor, p.AnchorFile), "\n") +
				"\n\n# pf(4) had no rule set; this one passes everything the anchor does not block.\npass all\n"
		}
		c, note := placeHook(c, p.Anchor, p.AnchorFile)
		if note != "" {
			s.say("%s: %s", pfConf, note)
		}
		return c
	})
	if err != nil {
		return "", "", false, err
	}
	return rules, pfConf, pfChanged, nil
}

// startPF brings the running system in line: pf started (or pfConf reloaded when it
// changed), pflog running with pf-log, pfsync restarted when its settings changed, and
// finally the anchor loaded with rules and its table with the allowlist file.
func (s *Setup) startPF(ctx context.Context, p pfctl.Params, rules, pfConf string, pfChanged, pfsyncChanged bool) error {
	out, err := s.probe(ctx, pfctl.Pfctl, "-s", "info")
	switch {
	case err != nil || !strings.Contains(string(out), "Status: Enabled"):
		if err := s.act(ctx, nil, "service", "pf", "start"); err != nil {
			return err
		}
	case pfChanged:
		if err := s.act(ctx, nil, pfctl.Pfctl, "-f", pfConf); err != nil {
			return err
		}
	default:
		s.say("pf: enabled, %s unchanged", pfConf)
	}
	if p.Log {
		if _, err := s.probe(ctx, "service", "pflog", "status"); err == nil {
			s.say("pflog: running")
		} else if err := s.act(ctx, nil, "service", "pflog", "start"); err != nil {
			return err
		}
	}
	if pfsyncChanged {
		if err := s.act(ctx, nil, "service", "pfsync", "start"); err != nil {
			return err
		}
	}
	if err := s.act(ctx, []byte(rules), pfctl.Pfctl, "-a", p.Anchor, "-f", "-"); err != nil {
		return err
	}
	return s.act(ctx, nil, pfctl.Pfctl, "-a", p.Anchor, "-t", p.Table, "-T", "replace", "-f", p.AllowFile)
}

// suggestCarp prints the rc.conf line for the VIP; the password and advskew are the
// operator's to choose, so nothing is written.
func (s *Setup) suggestCarp() {
	vip, err := netip.ParseAddr(s.Config.VIP)
	if err != nil {
		s.say("carp: no vip configured; nothing to suggest")
		return
	}
	ifname := s.Config.CarpInterface
	if ifname == "" {
		ifname = "IFACE"
	}
	vhid := s.Config.CarpVHID
	if vhid == 0 {
		vhid = 1
	}
	af, bits := "inet", 32
	if vip.Is6() {
		af, bits = "inet6", 128
	}
	peer := ""
	if p, err := carpPeer(s.Config.CarpPeers, vip); err != nil {
		s.say("carp: %v", err)
	} else if p.IsValid() {
		peer = " peer " + p.String()
		if p.Is6() {
			peer = " peer6 " + p.String()
		}
	}
	s.say("carp: not configured by setup. Suggested, with your own password (the same on every host) and advskew (0, 100, 200):")
	s.say("  sysrc ifconfig_%s_alias0=\"%s vhid %d advskew 0 pass PASSWORD%s alias %s/%d\"", ifname, af, vhid, peer, vip, bits)
	s.say("  service netif restart %s   # or: ifconfig %s %s vhid %d advskew 0 pass PASSWORD%s alias %s/%d", ifname, ifname, af, vhid, peer, vip, bits)
}

// setVar sets name in an rc.conf.d or sysctl.conf file under rcconf's rule and reports
// the earlier assignments it removed.
func (s *Setup) setVar(content, name, value string, style rcconf.Style) string {
	out, notes := rcconf.Set(content, name, value, style)
	for _, n := range notes {
		s.say("note: %s", n)
	}
	return out
}

func (s *Setup) say(format string, a ...any) {
	fmt.Fprintf(s.Out, format+"\n", a...)
}

func (s *Setup) path(p string) string {
	return filepath.Join(s.Root, filepath.FromSlash(p))
}

// editFile applies edit to the file's content ("" when missing) and writes the result.
func (s *Setup) editFile(name string, edit func(string) string) (bool, error) {
	old, err := os.ReadFile(s.path(name))
	if err != nil && !os.IsNotExist(err) {
		return false, fmt.Errorf("setup: %w", err)
	}
	return s.writeFile(name, edit(string(old)))
}

// writeFile makes name hold content: a diff in dry-run mode, else an atomic write with a
// backup of a replaced file.
func (s *Setup) writeFile(name, content string) (bool, error) {
	full := s.path(name)
	old, err := os.ReadFile(full)
	exists := err == nil
	if err != nil && !os.IsNotExist(err) {
		return false, fmt.Errorf("setup: %w", err)
	}
	if exists && string(old) == content {
		s.say("%s: unchanged", name)
		return false, nil
	}
	if s.DryRun {
		s.say("%s: would %s", name, map[bool]string{true: "update", false: "create"}[exists])
		from := name
		if len(old) == 0 {
			from = "/dev/null"
		}
		io.WriteString(s.Out, textdiff.Unified(from, name, string(old), content))
		return true, nil
	}
	suffix := ".bak-" + s.Now().UTC().Format("20060102T150405Z")
	backup, _, err := atomicfile.WriteWithBackup(full, []byte(content), 0o644, suffix)
	if err != nil {
		return false, fmt.Errorf("setup: %s: %w", name, err)
	}
	if backup != "" {
		s.say("%s: updated (previous version in %s%s)", name, name, suffix)
	} else {
		s.say("%s: created", name)
	}
	s.Log.Info("file written", "path", full, "backup", backup)
	return true, nil
}

// probe runs a read-only query; it runs in dry-run mode too, never without Live.
func (s *Setup) probe(ctx context.Context, name string, args ...string) ([]byte, error) {
	if !s.Live {
		return nil, fmt.Errorf("setup: %s not run: not live", name)
	}
	return s.Runner.Run(ctx, nil, name, args...)
}

// act runs a command that changes the running system, unless dry-run or not live.
func (s *Setup) act(ctx context.Context, stdin []byte, name string, args ...string) error {
	line := strings.Join(append([]string{name}, args...), " ")
	if stdin != nil {
		line += " < (generated rules)"
	}
	switch {
	case s.DryRun:
		s.say("would run: %s", line)
		return nil
	case !s.Live:
		s.say("skipped (not the running system): %s", line)
		return nil
	}
	s.say("run: %s", line)
	if _, err := s.Runner.Run(ctx, stdin, name, args...); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	return nil
}

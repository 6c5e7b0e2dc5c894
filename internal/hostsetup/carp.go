package hostsetup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/atomicfile"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/rcconf"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/textdiff"
)

// Files the CARP addresses are read from and written to, relative to Root. rc.d/netif
// loads rc.conf.d/network ("for compatibility") after /etc/rc.conf, so a variable set
// there wins over the same variable in rc.conf.
const (
	RCConf        = "/etc/rc.conf"
	RCConfNetwork = RCConfDir + "/network"
)

// Errors of the CARP step.
var (
	// ErrCarpPass: the password file is unsafe or holds a password carp(4) or rc.conf
	// would mangle.
	ErrCarpPass = errors.New("unusable CARP password file")
	// ErrCarpConfig: the configuration lacks what the CARP lines need.
	ErrCarpConfig = errors.New("CARP lines need more configuration")
	// ErrUnicastCarp: carp-peers on a FreeBSD without unicast CARP (before 14.0).
	ErrUnicastCarp = errors.New("unicast CARP (carp-peers) needs FreeBSD 14.0 or later")
)

// unicastCarpOsreldate is the first __FreeBSD_version with unicast CARP: 14.0 (ifconfig's
// peer and peer6, carp(4) "carp: support unicast", 2023, in 14.0-RELEASE).
const unicastCarpOsreldate = 1400000

// checkUnicastCarp refuses carp-peers on FreeBSD 13, whose ifconfig has no peer keyword
// (it would fail at boot on every CARP line, leaving the VIPs unconfigured). The version
// is kern.osreldate (the running kernel's __FreeBSD_version, sys/kern/kern_mib.c).
func (s *Setup) checkUnicastCarp(ctx context.Context) error {
	out, err := s.probe(ctx, "sysctl", "-n", "kern.osreldate")
	if err != nil {
		s.say("carp: unicast CARP (carp-peers) needs FreeBSD 14.0 or later; the version of this host was not checked (%v)", err)
		return nil
	}
	v := strings.TrimSpace(string(out))
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("setup: kern.osreldate is %q, not a version", v)
	}
	if n < unicastCarpOsreldate {
		return fmt.Errorf("setup: %w: this host runs kern.osreldate %d (FreeBSD %d); leave carp-peers empty and let CARP's multicast (224.0.0.18, ff02::12) reach carp-interface (on a hypervisor: promiscuous mode or forged transmits on its port group)",
			ErrUnicastCarp, n, n/100000)
	}
	s.say("carp: unicast to %s (FreeBSD %d.%d, kern.osreldate %d)", strings.Join(s.Config.CarpPeers, ", "), n/100000, n/1000%100, n)
	return nil
}

// carpKeyMax is the longest password carp(4) keeps: ifconfig copies it with strlcpy into
// the 20-byte carpr_key (CARP_KEY_LEN), so a 20th character would be silently dropped.
const carpKeyMax = 19

// passRe is what a password may contain. network.subr passes ifconfig_IF_aliasN through
// eval (no shell metacharacters, quotes or spaces) and treats "HEX-" anywhere in the line
// as an address range to expand (no '-').
var passRe = regexp.MustCompile(`^[A-Za-z0-9._+=:@%,/]+$`)

// ReadCarpPass reads the CARP password from path: a file readable by its owner only
// (mode 0600 or 0400; the password ends up in rc.conf.d), holding one line.
func ReadCarpPass(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("carp-pass-file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("carp-pass-file %s: %w: not a regular file", path, ErrCarpPass)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("carp-pass-file %s: %w: mode %04o lets others read it; run chmod 600 %s", path, ErrCarpPass, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("carp-pass-file: %w", err)
	}
	pass := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	switch {
	case pass == "":
		return "", fmt.Errorf("carp-pass-file %s: %w: empty", path, ErrCarpPass)
	case strings.Contains(pass, "\n"):
		return "", fmt.Errorf("carp-pass-file %s: %w: more than one line", path, ErrCarpPass)
	case len(pass) > carpKeyMax:
		return "", fmt.Errorf("carp-pass-file %s: %w: %d characters, carp(4) keeps %d", path, ErrCarpPass, len(pass), carpKeyMax)
	case !passRe.MatchString(pass) || pass == "inet" || pass == "inet6" || pass == "link" || pass == "ether":
		return "", fmt.Errorf("carp-pass-file %s: %w: use letters, digits and . _ + = : @ %% , / only (rc.conf evaluates the line; '-' starts an address range)", path, ErrCarpPass)
	}
	return pass, nil
}

// CarpAlias is one CARP address of this host as an rc.conf variable:
// ifconfig_IF_aliasN="inet VIP/32 vhid V advskew S pass P" (network.subr runs
// `ifconfig IF inet VIP/32 vhid V advskew S pass P alias`).
type CarpAlias struct {
	Iface   string
	Index   int
	VIP     netip.Addr
	VHID    int
	Advskew int
	// Peer is the other host's address of the VIP's family for unicast CARP (carp-peers;
	// invalid: multicast): written as "peer A" (IPv4) or "peer6 A" (IPv6).
	Peer netip.Addr
}

// Var is the variable name.
func (a CarpAlias) Var() string {
	return "ifconfig_" + rcIfName(a.Iface) + "_alias" + strconv.Itoa(a.Index)
}

// Value is the variable's value with pass as the password.
func (a CarpAlias) Value(pass string) string {
	af, bits := "inet", 32
	if a.VIP.Is6() {
		af, bits = "inet6", 128
	}
	v := fmt.Sprintf("%s %s/%d vhid %d advskew %d pass %s", af, a.VIP, bits, a.VHID, a.Advskew, pass)
	// ifconfig applies peer/peer6 with the other vhid parameters once every argument is
	// read (sbin/ifconfig/ifcarp.c setcarp_callback), so they belong on the same line.
	switch {
	case !a.Peer.IsValid():
	case a.Peer.Is4():
		v += " peer " + a.Peer.String()
	default:
		v += " peer6 " + a.Peer.String()
	}
	return v
}

// carpPeer returns the carp-peers address of vip's family (invalid with no carp-peers).
func carpPeer(peers []string, vip netip.Addr) (netip.Addr, error) {
	if len(peers) == 0 {
		return netip.Addr{}, nil
	}
	for _, p := range peers {
		if a, err := netip.ParseAddr(p); err == nil && a.Is4() == vip.Is4() {
			return a, nil
		}
	}
	fam := "IPv4"
	if vip.Is6() {
		fam = "IPv6"
	}
	return netip.Addr{}, fmt.Errorf("%w: carp-peers has no %s address for %s (unicast CARP advertises a VIP to a peer of its own family)", ErrCarpConfig, fam, vip)
}

// rcIfName is the interface name as network.subr spells it in variable names.
func rcIfName(ifname string) string {
	return strings.NewReplacer(".", "_", "-", "_", "/", "_", "+", "_").Replace(ifname)
}

// aliasVar matches an ifconfig_IF_aliasN assignment, capturing N and the value.
func aliasVar(iface string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^\s*ifconfig_` + regexp.QuoteMeta(rcIfName(iface)) + `_alias([0-9]+)\s*=\s*["']?([^"'\n]*)["']?`)
}

// carpAliases plans one alias per VIP of the configuration on carp-interface, with this
// host's advskew (carp-host-index). An alias already configuring the VIP (in rc.conf or
// rc.conf.d/network) keeps its index, so the rc.conf.d line replaces it; a new one takes
// the lowest index no variable of the interface uses.
func (s *Setup) carpAliases(rcConf, network string) ([]CarpAlias, error) {
	c := s.Config
	var missing []string
	if c.CarpInterface == "" {
		missing = append(missing, "carp-interface")
	}
	if c.CarpHostIndex == 0 {
		missing = append(missing, "carp-host-index")
	}
	eps := c.Endpoints()
	for _, ep := range eps {
		if ep.VHID == 0 {
			missing = append(missing, "a vhid for "+ep.VIP+" (vips ADDR@VHID, or carp-vhid)")
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: set %s", ErrCarpConfig, strings.Join(missing, ", "))
	}
	used := map[int]string{} // index -> value
	re := aliasVar(c.CarpInterface)
	for _, content := range []string{rcConf, network} {
		for _, m := range re.FindAllStringSubmatch(content, -1) {
			n, _ := strconv.Atoi(m[1])
			used[n] = m[2]
		}
	}
	var out []CarpAlias
	taken := map[int]bool{}
	for i, ep := range eps {
		vip, err := netip.ParseAddr(ep.VIP)
		if err != nil {
			return nil, fmt.Errorf("%w: %s is not an address", ErrCarpConfig, ep.VIP)
		}
		peer, err := carpPeer(c.CarpPeers, vip)
		if err != nil {
			return nil, err
		}
		a := CarpAlias{Iface: c.CarpInterface, Index: -1, VIP: vip, VHID: ep.VHID, Advskew: c.Advskew(i), Peer: peer}
		idx := make([]int, 0, len(used))
		for n := range used {
			idx = append(idx, n)
		}
		sort.Ints(idx)
		for _, n := range idx {
			if !taken[n] && configuresVIP(used[n], vip) {
				a.Index = n
				break
			}
		}
		if a.Index < 0 {
			for n := 0; ; n++ {
				if _, busy := used[n]; !busy && !taken[n] {
					a.Index = n
					break
				}
			}
		}
		taken[a.Index] = true
		out = append(out, a)
	}
	return out, nil
}

// configuresVIP reports whether an alias value configures vip (with any prefix length).
func configuresVIP(value string, vip netip.Addr) bool {
	for _, f := range strings.Fields(value) {
		addr, _, _ := strings.Cut(f, "/")
		if a, err := netip.ParseAddr(addr); err == nil && a.Unmap() == vip {
			return true
		}
	}
	return false
}

// carp prints this host's CARP addresses (the VIPs of vips, or the single vip, with this
// host's advskew) and, with WriteCarp, writes them into rc.conf.d/network, the file made
// readable by root only. The running interfaces are not touched: the printed ifconfig
// commands (or `service netif restart IF`) apply them. Without carp-host-index and the
// vhids, a single-VIP configuration gets the generic suggestion it always had.
func (s *Setup) carp(ctx context.Context) error {
	c := s.Config
	if len(c.CarpPeers) > 0 {
		if err := s.checkUnicastCarp(ctx); err != nil {
			return err
		}
	}
	if len(c.VIPs) == 0 && c.CarpHostIndex == 0 && !s.WriteCarp {
		s.suggestCarp()
		return nil
	}
	rcConf, err := s.readOptional(RCConf)
	if err != nil {
		return err
	}
	network, err := s.readOptional(RCConfNetwork)
	if err != nil {
		return err
	}
	aliases, err := s.carpAliases(rcConf, network)
	if err != nil {
		if s.WriteCarp {
			return fmt.Errorf("setup --carp: %w", err)
		}
		s.say("carp: cannot compute this host's CARP lines: %v", err)
		return nil
	}
	pass := ""
	if c.CarpPassFile != "" {
		if pass, err = ReadCarpPass(s.path(c.CarpPassFile)); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
	} else if s.WriteCarp {
		return fmt.Errorf("setup --carp: %w: set carp-pass-file (a file of mode 0600 holding the password)", ErrCarpConfig)
	}
	shown := "PASSWORD"
	if pass != "" {
		shown = "<carp-pass-file>"
	}
	s.say("carp: host %d of %d; advskew 0 is the preferred host of a VIP:", c.CarpHostIndex, c.CarpHostCount())
	for _, a := range aliases {
		s.say("  %s=\"%s\"", a.Var(), a.Value(shown))
	}
	if !s.WriteCarp {
		s.say("carp: not written (setup --carp writes these lines to %s)", RCConfNetwork)
		return nil
	}
	content := network
	for _, a := range aliases {
		// rcconf's notes quote the removed lines, which hold the password: name them only.
		var notes []string
		content, notes = rcconf.Set(content, a.Var(), a.Value(pass), rcconf.Quoted)
		if len(notes) > 0 {
			s.say("note: removed %d earlier %s line(s), overridden by a later one", len(notes), a.Var())
		}
	}
	if network == "" {
		content = managed + "\n" + content
	}
	changed, err := s.writeSecret(RCConfNetwork, network, content, pass)
	if err != nil {
		return err
	}
	if changed {
		s.say("carp: apply now with `service netif restart %s` (interrupts %s), or address by address:", c.CarpInterface, c.CarpInterface)
		for _, a := range aliases {
			s.say("  ifconfig %s %s alias", a.Iface, a.Value(shown))
		}
	}
	return nil
}

// readOptional returns a file's content under Root, "" when it does not exist.
func (s *Setup) readOptional(name string) (string, error) {
	b, err := os.ReadFile(s.path(name))
	if err != nil && !os.IsNotExist(err) {
		return "", fmt.Errorf("setup: %w", err)
	}
	return string(b), nil
}

// writeSecret is writeFile for a file holding the password: mode 0600 (an existing file
// with wider permissions is narrowed even when its content is right) and the password
// masked in the dry-run diff.
func (s *Setup) writeSecret(name, old, content, secret string) (bool, error) {
	full := s.path(name)
	mask := func(v string) string {
		if secret == "" {
			return v
		}
		return strings.ReplaceAll(v, "pass "+secret, "pass <carp-pass-file>")
	}
	st, statErr := os.Stat(full)
	exists := statErr == nil
	if statErr != nil && !errors.Is(statErr, os.ErrNotExist) {
		return false, fmt.Errorf("setup: %w", statErr)
	}
	if exists && old == content {
		if st.Mode().Perm()&0o077 != 0 {
			if s.DryRun {
				s.say("%s: would chmod 600 (it holds the CARP password)", name)
			} else if err := os.Chmod(full, 0o600); err != nil {
				return false, fmt.Errorf("setup: %w", err)
			} else {
				s.say("%s: chmod 600 (it holds the CARP password)", name)
			}
		} else {
			s.say("%s: unchanged", name)
		}
		return false, nil
	}
	if s.DryRun {
		s.say("%s: would %s", name, map[bool]string{true: "update", false: "create"}[exists])
		from := name
		if old == "" {
			from = "/dev/null"
		}
		io.WriteString(s.Out, textdiff.Unified(from, name, mask(old), mask(content)))
		return true, nil
	}
	suffix := ".bak-" + s.Now().UTC().Format("20060102T150405Z")
	// 0600 whatever the old file's mode, the backup too (the previous version may hold a
	// password): a 0644 file receiving the password must not stay readable.
	backup, _, err := atomicfile.WriteSecretWithBackup(full, []byte(content), 0o600, suffix)
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

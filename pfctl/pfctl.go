// Package pfctl renders the redis-carp-proxy pf anchor (the allowlist for the Redis, cluster
// bus and admin ports, CARP, pfsync and the client port on the VIP) from the proxy
// configuration, edits the allowlist file, and applies both with pfctl(8) through a
// cmdrun.Runner.
package pfctl

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

// BusPortOffset is the distance between a Redis node's client port and its cluster bus
// port (Redis default: port + 10000).
const BusPortOffset = 10000

// Params is everything the anchor depends on, taken from the proxy configuration.
type Params struct {
	Anchor     string // anchor name (pf-anchor)
	Table      string // allowlist table (pf-table)
	AllowFile  string // file the table is loaded from (pf-allow-file)
	AnchorFile string // the rendered anchor, loaded by pf.conf at boot (pf-anchor-file)
	InternalIf string // interface of the Redis/cluster traffic; "" = any
	CarpIf     string // interface carrying CARP; "" = any
	SyncIf     string // pfsync interface; "" = no pfsync rule
	LBNetworks []netip.Prefix
	PortLo     int // Redis client ports (redis-ports)
	PortHi     int
	AdminPort  int        // admin listener port; 0 = no admin listener
	ProxyAddr  netip.Addr // VIP (or the listen address); invalid = any
	ProxyPort  int
	TLSPort    int // the TLS client port (tls-port); 0 = none
	Log        bool
	// Per-source limits of the client rules (pf-max-src-conn, pf-max-src-conn-rate N/S).
	MaxSrcConn     int
	MaxSrcConnRate string
	Source         string // the configuration file, for the header comment

	// ProxyAddrs are the VIPs of an active-active configuration (vips); when set they
	// replace ProxyAddr.
	ProxyAddrs []netip.Addr
}

var (
	anchorRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
	tableRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,30}$`)
	ifRe     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.]{0,14}$`)
)

// FromConfig derives Params from the proxy configuration; source names the file.
func FromConfig(c *config.Config, source string) (Params, error) {
	p := Params{
		Anchor: c.PFAnchor, Table: c.PFTable, AllowFile: c.PFAllowFile, AnchorFile: c.PFAnchorFile,
		InternalIf: c.PFInternalInterface, CarpIf: c.CarpInterface, SyncIf: c.PFSyncInterface,
		Log: c.PFLog, Source: source, TLSPort: c.TLSPort, MaxSrcConn: c.PFMaxSrcConn, MaxSrcConnRate: c.PFMaxSrcConnRate,
	}
	var err error
	if p.PortLo, p.PortHi, err = ParsePorts(c.RedisPorts); err != nil {
		return p, err
	}
	for _, s := range c.PFLBNetwork {
		pfx, err := ParseEntry(s)
		if err != nil {
			return p, fmt.Errorf("pf-lb-network: %w", err)
		}
		p.LBNetworks = append(p.LBNetworks, pfx)
	}
	if c.AdminListen != "" {
		_, port, err := net.SplitHostPort(c.AdminListen)
		if err != nil {
			return p, fmt.Errorf("admin-listen: %w", err)
		}
		if p.AdminPort, err = strconv.Atoi(port); err != nil {
			return p, fmt.Errorf("admin-listen: bad port %q", port)
		}
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return p, fmt.Errorf("listen: %w", err)
	}
	if p.ProxyPort, err = strconv.Atoi(port); err != nil || p.ProxyPort <= 0 {
		return p, fmt.Errorf("listen: port %q cannot be filtered", port)
	}
	if c.VIP != "" {
		p.ProxyAddr, _ = netip.ParseAddr(c.VIP)
	} else if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
		p.ProxyAddr = a
	}
	for _, v := range c.VIPs {
		a, err := netip.ParseAddr(v.Addr)
		if err != nil {
			return p, fmt.Errorf("vips: %w", err)
		}
		p.ProxyAddrs = append(p.ProxyAddrs, a)
	}
	return p, p.Validate()
}

// proxyAddrs returns the addresses the client rules protect (none: any).
func (p Params) proxyAddrs() []netip.Addr {
	if len(p.ProxyAddrs) > 0 {
		return p.ProxyAddrs
	}
	if p.ProxyAddr.IsValid() {
		return []netip.Addr{p.ProxyAddr}
	}
	return nil
}

// Validate checks that every name and path can be written into pf.conf(5) as is.
func (p Params) Validate() error {
	if !anchorRe.MatchString(p.Anchor) {
		return fmt.Errorf("pf-anchor %q: %w (letters, digits, '_', '.', '-'; not starting with '_')", p.Anchor, ErrBadName)
	}
	if !tableRe.MatchString(p.Table) {
		return fmt.Errorf("pf-table %q: %w (letters, digits, '_'; at most 31)", p.Table, ErrBadName)
	}
	for _, f := range []struct{ key, v string }{{"pf-internal-interface", p.InternalIf}, {"carp-interface", p.CarpIf}, {"pfsync-interface", p.SyncIf}} {
		if f.v != "" && !ifRe.MatchString(f.v) {
			return fmt.Errorf("%s %q: %w (an interface name like em0)", f.key, f.v, ErrBadName)
		}
	}
	for _, f := range []struct{ key, v string }{{"pf-allow-file", p.AllowFile}, {"pf-anchor-file", p.AnchorFile}} {
		if f.v == "" || !strings.HasPrefix(f.v, "/") || strings.ContainsAny(f.v, "\"\\\n\r\t") {
			return fmt.Errorf("%s %q: %w (an absolute path without quotes or backslashes)", f.key, f.v, ErrBadPath)
		}
	}
	for _, a := range p.proxyAddrs() {
		if len(p.LBNetworks) == 0 {
			break
		}
		same := false
		for _, n := range p.LBNetworks {
			same = same || n.Addr().Is4() == a.Is4()
		}
		if !same {
			// pfctl would refuse the client rule: "rule expands to no valid combination".
			return fmt.Errorf("pf-lb-network has no network of the VIP's address family (%s): %w", a, ErrBadAddress)
		}
	}
	if p.PortLo < 1 || p.PortHi > 65535 || p.PortLo > p.PortHi {
		return fmt.Errorf("redis-ports %d:%d: %w", p.PortLo, p.PortHi, ErrBadPorts)
	}
	return nil
}

// ParsePorts parses "PORT" or "LOW:HIGH".
func ParsePorts(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		b = a
	}
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("redis-ports %q: %w (want PORT or LOW:HIGH)", s, ErrBadPorts)
	}
	return lo, hi, nil
}

// ParseEntry parses an allowlist entry: an IP address (a /32 or /128) or a CIDR whose
// host bits are zero. The result is canonical (IPv4-mapped IPv6 unmapped, zones refused).
func ParseEntry(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil || pfx.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: %w", s, ErrBadAddress)
		}
		if pfx.Addr().Is4In6() {
			pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
			if pfx.Bits() < 0 {
				return netip.Prefix{}, fmt.Errorf("%q: %w", s, ErrBadAddress)
			}
		}
		if m := pfx.Masked(); m != pfx {
			return netip.Prefix{}, fmt.Errorf("%q: %w: host bits set (did you mean %s?)", s, ErrBadAddress, m)
		}
		return pfx, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: %w", s, ErrBadAddress)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// FormatEntry writes an entry the way pfctl -T show prints it: a bare address for a
// single host, CIDR otherwise.
func FormatEntry(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

package carp

import (
	"bufio"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ifconfigCarp is one vhid as ifconfig prints it.
type ifconfigCarp struct {
	state            State
	vhid             int
	advbase, advskew int
	// peer and peer6 are where the advertisements go (14+): the multicast groups
	// 224.0.0.18 and ff02::12, or the other host with unicast CARP (ifconfig's peer and
	// peer6). Invalid when not printed (13).
	peer, peer6 netip.Addr
}

// unicast reports whether the vhid advertises to a unicast peer of either family.
func (c ifconfigCarp) unicast() bool {
	return c.peer.IsValid() && !c.peer.IsMulticast() || c.peer6.IsValid() && !c.peer6.IsMulticast()
}

// parseIfconfigCarp finds vhid in `ifconfig IFNAME` output: the line
// "carp: MASTER vhid 10 advbase 1 advskew 0" (13, 14, 15), on 14+ followed by
// "peer 224.0.0.18 peer6 ff02::12" (sbin/ifconfig/ifcarp.c carp_status; a unicast peer
// in place of a group), or 15's VRRP form "vrrp: MASTER vrid 10 prio 100 interval 100".
// Fields are found by keyword, not position.
func parseIfconfigCarp(out string, vhid int) (ifconfigCarp, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	var found *ifconfigCarp // set on our vhid's carp line; its peer line is the next one
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if found != nil && len(f) >= 2 && (f[0] == "peer" || f[0] == "peer6") {
			for i := 0; i+1 < len(f); i++ {
				a, err := netip.ParseAddr(f[i+1])
				if err != nil {
					continue
				}
				switch f[i] {
				case "peer":
					found.peer = a
				case "peer6":
					found.peer6 = a
				}
			}
			return *found, nil
		}
		if found != nil {
			return *found, nil
		}
		if len(f) < 4 || (f[0] != "carp:" && f[0] != "vrrp:") {
			continue
		}
		st, err := ParseState(f[1])
		if err != nil {
			return ifconfigCarp{}, fmt.Errorf("ifconfig line %q: %w", sc.Text(), err)
		}
		c := ifconfigCarp{state: st}
		for i := 2; i+1 < len(f); i++ {
			n, err := strconv.Atoi(f[i+1])
			if err != nil {
				continue
			}
			switch f[i] {
			case "vhid", "vrid":
				c.vhid = n
			case "advbase":
				c.advbase = n
			case "advskew":
				c.advskew = n
			}
		}
		if c.vhid == vhid {
			found = &c
		}
	}
	if found != nil {
		return *found, nil
	}
	return ifconfigCarp{}, fmt.Errorf("ifconfig: %w: vhid %d", ErrNoVHID, vhid)
}

// findVHID finds the interface and vhid carrying vip in `ifconfig [-a | IFNAME]` output:
// "\tinet 198.51.100.100 netmask 0xffffffff broadcast 198.51.100.100 vhid 10" under
// the interface's "em0: flags=…" header line.
func findVHID(out string, vip netip.Addr) (ifname string, vhid int, err error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	cur := ""
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if line[0] != '\t' && line[0] != ' ' {
			if name, _, ok := strings.Cut(line, ":"); ok {
				cur = name
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || (f[0] != "inet" && f[0] != "inet6") {
			continue
		}
		a, perr := netip.ParseAddr(strings.SplitN(f[1], "%", 2)[0])
		if perr != nil || a.Unmap() != vip {
			continue
		}
		for i := 2; i+1 < len(f); i++ {
			if f[i] == "vhid" {
				n, err := strconv.Atoi(f[i+1])
				if err != nil || n < 1 || n > 255 {
					return "", 0, fmt.Errorf("ifconfig: bad vhid in %q", line)
				}
				return cur, n, nil
			}
		}
		return "", 0, fmt.Errorf("ifconfig: %s is on %s without a vhid (not a CARP address): %w", vip, cur, ErrNoVHID)
	}
	return "", 0, fmt.Errorf("ifconfig: %w: no interface has %s", ErrNoVHID, vip)
}

package carp

import (
	"errors"
	"net/netip"
	"os"
	"testing"
	"unsafe"
)

// readTestdata returns testdata/name: output recorded from the real tools.
func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseIfconfig(t *testing.T) {
	for _, tc := range []struct {
		file             string
		vhid             int
		state            State
		advbase, advskew int
	}{
		{"ifconfig-13.txt", 10, Master, 1, 0},
		{"ifconfig-13.txt", 20, Backup, 1, 100},
		{"ifconfig-14.txt", 10, Backup, 1, 50},
		{"ifconfig-14.txt", 20, Master, 1, 50},
		{"ifconfig-15.txt", 10, Init, 1, 100},
		{"ifconfig-15.txt", 30, Master, 0, 0},
		{"ifconfig-a-14.txt", 10, Master, 1, 50},
	} {
		c, err := parseIfconfigCarp(readTestdata(t, tc.file), tc.vhid)
		if err != nil {
			t.Errorf("%s vhid %d: %v", tc.file, tc.vhid, err)
			continue
		}
		if c.state != tc.state || c.vhid != tc.vhid || c.advbase != tc.advbase || c.advskew != tc.advskew {
			t.Errorf("%s vhid %d: got %+v", tc.file, tc.vhid, c)
		}
	}
	if _, err := parseIfconfigCarp(readTestdata(t, "ifconfig-14.txt"), 99); !errors.Is(err, ErrNoVHID) {
		t.Errorf("missing vhid: %v", err)
	}
	if _, err := parseIfconfigCarp("\tcarp: WEIRD vhid 10 advbase 1 advskew 0\n", 10); !errors.Is(err, ErrBadState) {
		t.Errorf("bad state: %v", err)
	}
}

func TestFindVHID(t *testing.T) {
	for _, tc := range []struct {
		file, vip, ifname string
		vhid              int
	}{
		{"ifconfig-13.txt", "198.51.100.100", "em0", 10},
		{"ifconfig-13.txt", "198.51.100.101", "em0", 20},
		{"ifconfig-14.txt", "2001:db8::100", "em0", 20},
		{"ifconfig-15.txt", "198.51.100.110", "vtnet0", 30},
		{"ifconfig-a-14.txt", "198.51.100.100", "em1", 10},
	} {
		ifname, vhid, err := findVHID(readTestdata(t, tc.file), netip.MustParseAddr(tc.vip))
		if err != nil || ifname != tc.ifname || vhid != tc.vhid {
			t.Errorf("%s %s: %s vhid %d, %v", tc.file, tc.vip, ifname, vhid, err)
		}
	}
	// A plain (non-CARP) address and an absent one are errors, not vhid 0.
	for _, vip := range []string{"198.51.100.2", "198.51.100.200"} {
		if _, _, err := findVHID(readTestdata(t, "ifconfig-a-14.txt"), netip.MustParseAddr(vip)); !errors.Is(err, ErrNoVHID) {
			t.Errorf("%s: %v", vip, err)
		}
	}
}

func TestParseDevdEvent(t *testing.T) {
	ev, err := parseDevdEvent("!system=CARP subsystem=10@em0 type=MASTER\n")
	if err != nil || ev != (devdEvent{vhid: 10, ifname: "em0", state: Master}) {
		t.Fatalf("%+v %v", ev, err)
	}
	ev, err = parseDevdEvent("!system=CARP subsystem=255@vtnet0.100 type=BACKUP")
	if err != nil || ev != (devdEvent{vhid: 255, ifname: "vtnet0.100", state: Backup}) {
		t.Fatalf("%+v %v", ev, err)
	}
	for _, bad := range []string{
		"",
		"!system=IFNET subsystem=em0 type=LINK_UP\n",
		"+uhub0 at bus=0 sernum=\"\" on usbus0\n",
		"!system=CARP subsystem=em0 type=MASTER\n",
		"!system=CARP subsystem=0@em0 type=MASTER\n",
		"!system=CARP subsystem=10@ type=MASTER\n",
		"!system=CARP subsystem=10@em0 type=ACTIVE\n",
		"!system=CARP subsystem=10@em0 type=MASTER" + string(make([]byte, 2000)),
	} {
		if _, err := parseDevdEvent(bad); !errors.Is(err, ErrBadEvent) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// The SIOCGVH structures must match FreeBSD's on amd64 and arm64 (both LP64, the same
// int32 alignment); carpreq.go also checks the sizes at compile time for every target.
func TestCarpreqLayout(t *testing.T) {
	var cr carpreq
	if s := unsafe.Sizeof(cr); s != 40 {
		t.Fatalf("sizeof carpreq = %d, want 40", s)
	}
	offs := []uintptr{unsafe.Offsetof(cr.Count), unsafe.Offsetof(cr.VHID), unsafe.Offsetof(cr.State),
		unsafe.Offsetof(cr.Advskew), unsafe.Offsetof(cr.Advbase), unsafe.Offsetof(cr.Key)}
	for i, want := range []uintptr{0, 4, 8, 12, 16, 20} {
		if offs[i] != want {
			t.Fatalf("carpreq field %d at offset %d, want %d", i, offs[i], want)
		}
	}
	var ifr ifreqCarp
	if s, o := unsafe.Sizeof(ifr), unsafe.Offsetof(ifr.Data); s != 32 || o != 16 {
		t.Fatalf("ifreq: size %d, ifr_data at %d; want 32, 16", s, o)
	}
	// _IOWR('i', 246, struct ifreq)
	const iocInOut, iocparmMask = 0xc0000000, 0x1fff
	if got := uint32(iocInOut | (uint32(unsafe.Sizeof(ifr))&iocparmMask)<<16 | 'i'<<8 | 246); got != siocgvh {
		t.Fatalf("SIOCGVH = %#x, want %#x", got, siocgvh)
	}
	name, ok := ifName("em0")
	if !ok || string(name[:4]) != "em0\x00" {
		t.Fatalf("ifName: %q", name)
	}
	if _, ok := ifName("an-interface-name-too-long"); ok {
		t.Fatal("over-long interface name accepted")
	}
}

// Unicast CARP (FreeBSD 14+, carp-peers): the peer line under each carp line names the
// other host for the vhid's own family; the state is read as before and the peers are
// decoded, multicast groups included.
func TestParseIfconfigUnicastPeers(t *testing.T) {
	out := readTestdata(t, "ifconfig-14-unicast.txt")
	for _, tc := range []struct {
		vhid        int
		state       State
		peer, peer6 string
	}{
		{1, Master, "198.51.100.12", "ff02::12"},
		{2, Backup, "224.0.0.18", "2001:db8::12"},
	} {
		c, err := parseIfconfigCarp(out, tc.vhid)
		if err != nil {
			t.Fatalf("vhid %d: %v", tc.vhid, err)
		}
		if c.state != tc.state || c.peer.String() != tc.peer || c.peer6.String() != tc.peer6 || !c.unicast() {
			t.Errorf("vhid %d: %+v, want %v peer %s peer6 %s (unicast)", tc.vhid, c, tc.state, tc.peer, tc.peer6)
		}
	}
	// 14's multicast default: peers decoded, not unicast; 13 prints no peer line.
	if c, err := parseIfconfigCarp(readTestdata(t, "ifconfig-14.txt"), 10); err != nil || c.peer.String() != "224.0.0.18" || c.unicast() {
		t.Errorf("14 multicast: %+v, %v", c, err)
	}
	if c, err := parseIfconfigCarp(readTestdata(t, "ifconfig-13.txt"), 20); err != nil || c.peer.IsValid() || c.state != Backup {
		t.Errorf("13: %+v, %v", c, err)
	}
	// The vhid's own carp line is the last one in the output: still found.
	if c, err := parseIfconfigCarp("\tcarp: BACKUP vhid 3 advbase 1 advskew 0\n", 3); err != nil || c.vhid != 3 {
		t.Errorf("last line: %+v, %v", c, err)
	}
	if ifname, vhid, err := findVHID(out, netip.MustParseAddr("2001:db8::101")); err != nil || ifname != "vtnet0" || vhid != 2 {
		t.Errorf("findVHID with unicast peers: %s %d %v", ifname, vhid, err)
	}
}

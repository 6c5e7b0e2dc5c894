package carp

import "unsafe"

// carpreq is FreeBSD's struct carpreq (sys/netinet/ip_carp.h), the same on 13, 14 and 15:
// 40 bytes, fields at offsets 0, 4, 8, 12, 16, 20.
type carpreq struct {
	Count   int32 // entries in the array; always 1: one vhid, never the list-all form
	VHID    int32
	State   int32
	Advskew int32
	Advbase int32
	Key     [20]byte
}

// ifreqCarp is struct ifreq (32 bytes on amd64 and arm64: a 16-byte name, then the union)
// with ifr_data pointing at a carpreq, as SIOCGVH takes it.
type ifreqCarp struct {
	Name [16]byte
	Data *carpreq
	_    [16 - unsafe.Sizeof(uintptr(0))]byte
}

// siocgvh is _IOWR('i', 246, struct ifreq): direction in|out (0xc0000000), size 32
// (0x20 << 16), group 'i' (0x69 << 8), number 246 (0xf6).
const siocgvh = 0xc02069f6

// Compile-time layout checks, evaluated for every GOOS/GOARCH that builds this package
// (CI vets freebsd/amd64 and freebsd/arm64).
var (
	_ [40 - unsafe.Sizeof(carpreq{})]byte
	_ [unsafe.Sizeof(carpreq{}) - 40]byte
	_ [32 - unsafe.Sizeof(ifreqCarp{})]byte
	_ [unsafe.Sizeof(ifreqCarp{}) - 32]byte
)

// ifName copies an interface name into an ifreq name field (NUL-terminated).
func ifName(name string) ([16]byte, bool) {
	var b [16]byte
	if len(name) == 0 || len(name) >= len(b) {
		return b, false
	}
	copy(b[:], name)
	return b, true
}

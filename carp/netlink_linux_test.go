package carp

import (
	"errors"
	"slices"
	"syscall"
	"testing"
	"time"
)

// The codec against the real Linux kernel: FreeBSD netlink has the same wire format.
func TestGenlFamilyLookupLinux(t *testing.T) {
	s, err := openGenl(2 * time.Second)
	if err != nil {
		t.Skipf("no generic netlink here: %v", err)
	}
	defer s.Close()
	c := &genlClient{t: s}
	id, err := c.familyID("nlctrl")
	if err != nil {
		t.Fatal(err)
	}
	if id != genlIDCtrl {
		t.Fatalf("nlctrl id = %#x, want %#x", id, genlIDCtrl)
	}
	// Not a family: the kernel's ENOENT comes through.
	if _, err := c.familyID("rcp-nofamily"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("unknown family: %v", err)
	}
	// A multi-part dump (as CARP_NL_CMD_GET is sent): every family, up to NLMSG_DONE.
	seq := c.nextSeq()
	msgs, err := c.roundTrip(genlRequest(genlIDCtrl, nlmFDump, seq, ctrlCmdGetFamily, 1, nil), seq, true)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ids := map[string]uint16{}
	for _, m := range msgs {
		attrs, err := genlAttrs(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range attrs {
			if a.typ == ctrlAttrFamilyName {
				names = append(names, string(a.data[:len(a.data)-1]))
			}
		}
		for _, a := range attrs {
			if a.typ == ctrlAttrFamilyID {
				ids[names[len(names)-1]] = nle.Uint16(a.data)
			}
		}
	}
	if !slices.Contains(names, "nlctrl") || len(names) < 2 {
		t.Fatalf("dumped families %v", names)
	}
	t.Logf("%d generic netlink families: %v", len(names), names)
	// A dynamically numbered family resolves by name to the id the dump lists.
	for _, fam := range names {
		if fam == "nlctrl" {
			continue
		}
		id, err := c.familyID(fam)
		if err != nil || id != ids[fam] || id == genlIDCtrl {
			t.Fatalf("family %s: id %#x (dump: %#x), %v", fam, id, ids[fam], err)
		}
		t.Logf("family %s has id %#x", fam, id)
		break
	}
	// And the socket still works for a plain request after the dump.
	if id, err := c.familyID("nlctrl"); err != nil || id != genlIDCtrl {
		t.Fatalf("after dump: %#x %v", id, err)
	}
}

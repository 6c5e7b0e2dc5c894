package carp

import (
	"fmt"
	"strconv"
	"strings"
)

// devdEvent is a CARP transition as devd reports it.
type devdEvent struct {
	vhid   int
	ifname string
	state  State
}

// maxDevdEvent bounds what parseDevdEvent looks at (devd records are short lines).
const maxDevdEvent = 1024

// parseDevdEvent parses one devd record, "!system=CARP subsystem=10@em0 type=MASTER\n"
// (sys/netinet/ip_carp.c, carp_set_state). Other records give ErrBadEvent.
func parseDevdEvent(rec string) (devdEvent, error) {
	if len(rec) > maxDevdEvent || !strings.HasPrefix(rec, "!") {
		return devdEvent{}, ErrBadEvent
	}
	var system, subsystem, typ string
	for _, f := range strings.Fields(rec[1:]) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "system":
			system = v
		case "subsystem":
			subsystem = v
		case "type":
			typ = v
		}
	}
	if system != "CARP" {
		return devdEvent{}, ErrBadEvent
	}
	vs, ifname, ok := strings.Cut(subsystem, "@")
	vhid, err := strconv.Atoi(vs)
	if !ok || err != nil || vhid < 1 || vhid > 255 || ifname == "" {
		return devdEvent{}, fmt.Errorf("%w: subsystem %q", ErrBadEvent, subsystem)
	}
	st, err := ParseState(typ)
	if err != nil {
		return devdEvent{}, fmt.Errorf("%w: %w", ErrBadEvent, err)
	}
	return devdEvent{vhid: vhid, ifname: ifname, state: st}, nil
}

package gate

import (
	"log/slog"
	"sync"
	"syscall"
)

// freeBind sets the OS's free-bind option on a listening socket before bind (setFreeBind:
// IP_FREEBIND on Linux, IP_BINDANY on FreeBSD; nil elsewhere). Where the option is
// optional (FreeBSD: IP_BINDANY needs PRIV_NETINET_BINDANY, sys/netinet/ip_output.c, which
// root has but a jail only with VNET, sys/kern/kern_jail.c prison_priv_check) a refusal is
// noted for the log and the bind attempted anyway: a CARP VIP stays configured on its
// interface in BACKUP, so a plain bind works whenever the address is there.
func freeBind(network, address string, c syscall.RawConn) error {
	if setFreeBind == nil {
		return nil
	}
	var serr error
	if err := c.Control(func(fd uintptr) { serr = setFreeBind(int(fd), network == "tcp6") }); err != nil {
		return err
	}
	if serr != nil && freeBindOptional {
		freeBindRefusal.note(serr)
		return nil
	}
	return serr
}

// freeBindRefusal remembers the first refusal of the free-bind option, reported in the
// log once per process (each activation of each VIP's listener would otherwise repeat it).
var freeBindRefusal refusal

type refusal struct {
	mu       sync.Mutex
	err      error
	reported bool
}

func (r *refusal) note(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

// report logs the refusal once.
func (r *refusal) report(log *slog.Logger) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil || r.reported {
		return
	}
	r.reported = true
	log.Warn("IP_BINDANY refused (it needs root; inside a jail, a VNET jail): the client listener can bind the VIP only while it is configured on an interface",
		"err", r.err)
}

package carp

import (
	"errors"
	"sync"
)

// nlConn is an open generic netlink socket.
type nlConn interface {
	nlTransport
	Close() error
}

// netlinkReader reads CARP state over generic netlink through one socket, kept open for
// the life of its watcher: FreeBSD's nl_attach (sys/netlink/netlink_domain.c) starts a
// taskqueue thread per netlink socket, so a socket per read created and destroyed a kernel
// thread per VIP every poll. On any error the "carp" family id is forgotten, and the
// socket closed unless the kernel answered that the vhid does not exist: after `kldunload carp; kldload carp` the family is registered again under a
// new id and the old one is refused (genl_handle_message), so the next read (and one
// immediate retry when the id was cached) opens a new socket and resolves the family
// again.
type netlinkReader struct {
	open func() (nlConn, error)

	mu     sync.Mutex
	conn   nlConn
	c      *genlClient
	family uint16 // generic netlink family id of "carp", once resolved
}

func (r *netlinkReader) read(ifname string, vhid int) (State, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cached := r.family != 0
	st, err := r.readOnce(ifname, vhid)
	if err != nil && cached && !errors.Is(err, errUnavailable) && !errors.Is(err, ErrNoVHID) {
		st, err = r.readOnce(ifname, vhid)
	}
	return st, err
}

func (r *netlinkReader) readOnce(ifname string, vhid int) (State, error) {
	if r.conn == nil {
		conn, err := r.open()
		if err != nil {
			return Init, netlinkError(err)
		}
		r.conn, r.c = conn, &genlClient{t: conn}
	}
	if r.family == 0 {
		id, err := r.c.familyID(carpNLFamily)
		if err != nil {
			r.reset()
			return Init, netlinkError(err)
		}
		r.family = id
	}
	ci, err := r.c.carpGet(r.family, ifname, uint32(vhid))
	if errors.Is(err, ErrNoVHID) {
		// A valid answer over a working socket: keep the socket (no thread churn while
		// a vhid is missing), but resolve the family again in case the id now names
		// another family.
		r.family = 0
		return Init, err
	}
	if err != nil {
		r.reset()
		return Init, err
	}
	return ci.state, nil
}

// reset closes the socket and forgets the family id.
func (r *netlinkReader) reset() {
	if r.conn != nil {
		r.conn.Close()
	}
	r.conn, r.c, r.family = nil, nil, 0
}

// Close closes the socket (a later read opens a new one).
func (r *netlinkReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reset()
	return nil
}

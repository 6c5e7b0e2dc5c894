package carp

import "errors"

// Sentinel errors of package carp.
var (
	// ErrNotSupported: the mode does not exist on this operating system.
	ErrNotSupported = errors.New("not supported on this GOOS")
	// ErrNoVIP: the mode needs the vip key.
	ErrNoVIP = errors.New("vip is not set")
	// ErrBadState: a state name that is not INIT, BACKUP or MASTER.
	ErrBadState = errors.New("unknown CARP state")
	// ErrNoVHID: the vhid (or the VIP's vhid) is not configured on the interface.
	ErrNoVHID = errors.New("vhid not found")
	// ErrNetlink: a malformed or unexpected netlink message.
	ErrNetlink = errors.New("netlink protocol error")
	// ErrBadEvent: a devd line that is not a CARP event.
	ErrBadEvent = errors.New("not a devd CARP event")
	// ErrStateInUse: another running instance records its demotion in the same state file.
	ErrStateInUse = errors.New("demotion state file in use by another redis-carp-proxy instance")

	// errUnavailable marks a kernel interface this system does not offer (netlink before
	// 14, SIOCGVH after 15): the next way of reading the state is used.
	errUnavailable = errors.New("not offered by this kernel")
)

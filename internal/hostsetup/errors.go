package hostsetup

import "errors"

var (
	// ErrNotRoot is returned when setup would change the running system without root.
	ErrNotRoot = errors.New("setup needs root to change the running system (or use --dry-run / --root DIR)")
	// ErrBadPeer is a pfsync-peer that is not an IP address.
	ErrBadPeer = errors.New("not an IP address")
)

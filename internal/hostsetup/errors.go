package hostsetup

import "errors"

// ErrBadPeer is a pfsync-peer that is not an IP address.
var ErrBadPeer = errors.New("not an IP address")

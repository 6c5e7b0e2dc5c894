package handover

import "errors"

// Sentinel errors of package handover.
var (
	// ErrNoPeer: no other host is BACKUP with a complete slot map for a VIP this host
	// serves, so giving it up would leave it unserved.
	ErrNoPeer = errors.New("no peer ready to take over")
	// ErrTimeout: the VIPs did not move within the handover's timeout.
	ErrTimeout = errors.New("VIPs did not move in time")
)

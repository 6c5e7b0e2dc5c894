//go:build !linux && !freebsd

package handoff

import "errors"

var errNoCreds = errors.New("peer credentials not supported on this system")

func (osCreds) peerUID(int) (uint32, error) { return 0, errNoCreds }

func openFDs() (int, error) { return 0, errNoCreds }

const recvFlags = 0

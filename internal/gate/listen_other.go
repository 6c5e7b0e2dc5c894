//go:build !linux && !freebsd

package gate

import "syscall"

// freeBind does nothing here: the address must exist when the listener opens.
func freeBind(network, address string, c syscall.RawConn) error { return nil }

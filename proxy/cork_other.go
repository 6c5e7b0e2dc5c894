//go:build !linux && !freebsd

package proxy

import "errors"

// setCork is not supported here: a drained client's last reply and close may leave in two
// segments.
func setCork(fd int, on bool) error { return errors.New("proxy: TCP cork not supported on this OS") }

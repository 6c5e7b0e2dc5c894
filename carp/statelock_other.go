//go:build !unix

package carp

import (
	"errors"
	"os"
)

var errLocked = errors.New("locked")

// lockFile does nothing where there is no flock(2) (the demotion sysctl exists only on
// FreeBSD anyway).
func lockFile(*os.File) error { return nil }

//go:build unix

package carp

import (
	"errors"
	"os"
	"syscall"
)

// errLocked: the lock is held through another open file (another process).
var errLocked = errors.New("locked")

// lockFile takes flock(2)'s exclusive lock on f without waiting. The lock belongs to the
// open file and ends when it is closed or the process exits (a crash leaves no stale lock).
func lockFile(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errLocked
	}
	return err
}

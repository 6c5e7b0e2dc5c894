//go:build linux || freebsd

package testcluster

import "syscall"

// sysProcAttr kills a redis-server when the process that started it dies, so an
// interrupted test run leaves nothing behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

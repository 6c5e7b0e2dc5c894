//go:build linux || freebsd

package testcluster

import "syscall"

// ChildProcAttr returns process attributes that kill a child (a redis-server, or the proxy
// started by the demo and the benchmark) when the process that started it dies, so an
// interrupted run leaves nothing behind.
func ChildProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

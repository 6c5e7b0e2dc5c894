//go:build !linux && !freebsd

package testcluster

import "syscall"

// sysProcAttr has no parent-death signal here: Close is the only clean-up.
func sysProcAttr() *syscall.SysProcAttr { return nil }

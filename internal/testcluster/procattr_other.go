//go:build !linux && !freebsd

package testcluster

import "syscall"

// ChildProcAttr has no parent-death signal here: Close is the only clean-up.
func ChildProcAttr() *syscall.SysProcAttr { return nil }

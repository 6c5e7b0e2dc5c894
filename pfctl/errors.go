package pfctl

import "errors"

// Sentinel errors; callers test them with errors.Is.
var (
	// ErrBadName is a pf anchor, table or interface name that pf.conf(5) cannot hold.
	ErrBadName = errors.New("invalid pf name")
	// ErrBadAddress is an allowlist entry that is neither an IP address nor a CIDR.
	ErrBadAddress = errors.New("not an IP address or CIDR")
	// ErrBadPorts is a redis-ports value that is not PORT or LOW:HIGH.
	ErrBadPorts = errors.New("invalid port range")
	// ErrBadPath is a file path pf.conf(5) cannot quote.
	ErrBadPath = errors.New("invalid path")
)

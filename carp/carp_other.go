//go:build !linux && !freebsd

package carp

import (
	"fmt"
	"net/netip"
	"runtime"
)

func newFreeBSDSource(Config, netip.Addr) (source, error) {
	return nil, fmt.Errorf("carp: mode freebsd: %w (%s)", ErrNotSupported, runtime.GOOS)
}

func newVIPSource(Config, netip.Addr) (source, error) {
	return nil, fmt.Errorf("carp: mode vip: %w (%s)", ErrNotSupported, runtime.GOOS)
}

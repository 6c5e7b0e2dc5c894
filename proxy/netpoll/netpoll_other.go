//go:build !linux && !freebsd

package netpoll

// Poller is not available on this system; New reports ErrNotSupported and the proxy
// cannot serve here (its Start says so): it runs on Linux and FreeBSD.
type Poller struct{}

// New reports ErrNotSupported.
func New(batch int) (*Poller, error) { return nil, ErrNotSupported }

// Add is not supported.
func (p *Poller) Add(fd int, write bool) error { return ErrNotSupported }

// Set is not supported.
func (p *Poller) Set(fd int, read, write bool) error { return ErrNotSupported }

// Remove is not supported.
func (p *Poller) Remove(fd int) error { return ErrNotSupported }

// Wait is not supported.
func (p *Poller) Wait(dst []Event, timeoutMs int, hold bool) ([]Event, bool, error) {
	return dst, false, ErrNotSupported
}

// Wake is not supported.
func (p *Poller) Wake() error { return ErrNotSupported }

// Close does nothing.
func (p *Poller) Close() error { return nil }

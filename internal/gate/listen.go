package gate

import (
	"context"
	"crypto/tls"
	"net"
)

// Listen opens a TCP listener on addr. Where the OS allows it (freeBind), the socket may
// bind an address that is not (yet) on any interface, so activation never races the VIP
// appearing: IP_FREEBIND on Linux, IP_BINDANY on FreeBSD.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: freeBind}
	return lc.Listen(ctx, "tcp", addr)
}

// ListenTLS returns a Listen function for a Gate that serves TLS with tc on top of Listen.
func ListenTLS(tc *tls.Config) func(ctx context.Context, addr string) (net.Listener, error) {
	return func(ctx context.Context, addr string) (net.Listener, error) {
		ln, err := Listen(ctx, addr)
		if err != nil {
			return nil, err
		}
		return WrapTLS(ln, tc), nil
	}
}

// WrapTLS serves TLS with tc on ln; the result keeps ln for a hand-over (Raw).
func WrapTLS(ln net.Listener, tc *tls.Config) net.Listener {
	return &tlsListener{Listener: tls.NewListener(ln, tc), raw: ln, tc: tc}
}

// tlsListener is a TLS listener that knows its TCP listener and its configuration (the
// proxy accepts from Raw and makes the TLS connections itself: proxy.TLSListener).
type tlsListener struct {
	net.Listener
	raw net.Listener
	tc  *tls.Config
}

// Raw returns the TCP listener under the TLS one.
func (l *tlsListener) Raw() net.Listener { return l.raw }

// TLSConfig returns the TLS configuration the listener serves.
func (l *tlsListener) TLSConfig() *tls.Config { return l.tc }

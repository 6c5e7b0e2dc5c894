package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

// TestBackendConnectTimeout: a node that does not complete the TCP handshake (a listener
// whose accept queue is full drops SYNs) fails the dial after backend-connect-timeout.
func TestBackendConnectTimeout(t *testing.T) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := "127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
	// Fill the accept queue (never accepted).
	for i := 0; i < 4; i++ {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			defer c.Close()
		}
	}
	cfg := config.Default()
	cfg.BackendConnectTimeout = 300 * time.Millisecond
	var p atomic.Pointer[Config]
	p.Store(cfg)
	c := newCluster(context.Background(), &p, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(nil))
	start := time.Now()
	conn, err := c.dialNode(context.Background(), addr)
	d := time.Since(start)
	if err == nil {
		conn.Close()
		t.Skip("the kernel completed the handshake despite a full accept queue; connect timeout not observable here")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("dial error %v, want a timeout", err)
	}
	if d < 250*time.Millisecond || d > 5*time.Second {
		t.Fatalf("dial gave up after %v, want about 300ms", d)
	}
}

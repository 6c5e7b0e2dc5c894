package proxy

import (
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// The event loops serve descriptors: a plain TCP connection's socket directly, a TLS
// client of the proxy's own TLS listeners its socket too, with crypto/tls in memory
// (tlsloop.go), and any other connection (TLS to a node with tls-cluster, TLS from a
// listener the proxy did not wrap) through a bridge, so that every client and every node
// connection goes through the one request path.
//
// A bridge is a socketpair: the loop serves one end like any socket; two goroutines copy
// between the other end and the connection, decrypting in and encrypting out. They end
// together: the connection's end (EOF or error) shuts the pair's write side, so the loop
// reads EOF as from a peer that closed; the loop closing its end makes the outbound copy
// read EOF, which closes the connection.

// loopFD returns a non-blocking descriptor an event loop serves for conn, and takes
// ownership of conn.
func loopFD(conn net.Conn) (int, error) {
	if _, plain := conn.(*net.TCPConn); plain {
		return takeFD(conn)
	}
	return bridge(conn)
}

// bridgeInBuf is the size of a bridge's inbound copy buffer: one TLS record's payload.
const bridgeInBuf = 16 << 10

// bridgeOutBufs pools the outbound copy buffers: a bridge holds one only while it has
// bytes to encrypt, so an idle bridge costs its inbound buffer alone.
var bridgeOutBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// bridge starts the goroutine pair of conn and returns the loop's end of the pair.
func bridge(conn net.Conn) (int, error) {
	fds, err := socketpair()
	if err != nil {
		conn.Close()
		return -1, fmt.Errorf("bridge: socketpair: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		conn.Close()
		return -1, fmt.Errorf("bridge: %w", err)
	}
	f := os.NewFile(uintptr(fds[1]), "bridge")
	fc, err := net.FileConn(f) // a duplicate on Go's poller
	f.Close()
	if err != nil {
		unix.Close(fds[0])
		conn.Close()
		return -1, fmt.Errorf("bridge: %w", err)
	}
	pair := fc.(*net.UnixConn)
	go bridgeIn(conn, pair)
	go bridgeOut(pair, conn)
	return fds[0], nil
}

// bridgeIn copies from conn to the loop until either side ends.
func bridgeIn(conn net.Conn, pair *net.UnixConn) {
	buf := make([]byte, bridgeInBuf)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if _, werr := pair.Write(buf[:n]); werr != nil {
				conn.Close() // the loop closed its end
				return
			}
		}
		if err != nil {
			pair.CloseWrite() // the loop reads EOF
			return
		}
	}
}

// bridgeOut copies from the loop to conn; the loop closing its end closes conn. It waits
// for readability without a buffer and takes one from the pool per burst.
func bridgeOut(pair *net.UnixConn, conn net.Conn) {
	defer pair.Close()
	defer conn.Close()
	rc, err := pair.SyscallConn()
	if err != nil {
		return
	}
	for {
		var buf *[]byte
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			b := bridgeOutBufs.Get().(*[]byte)
			for {
				n, rerr = unix.Read(int(fd), *b)
				if rerr != unix.EINTR {
					break
				}
			}
			if rerr == unix.EAGAIN {
				bridgeOutBufs.Put(b)
				return false // wait for readability
			}
			buf = b
			return true
		})
		if buf == nil {
			return
		}
		if err != nil || rerr != nil || n <= 0 {
			bridgeOutBufs.Put(buf)
			return
		}
		_, werr := conn.Write((*buf)[:n])
		bridgeOutBufs.Put(buf)
		if werr != nil {
			return // the peer is gone: closing conn and the pair tells the loop
		}
	}
}

package handoff

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DefaultDir holds the hand-over sockets: 0700, owned by the service's user (root when it
// runs as root), so that only that user reaches the socket at all.
const DefaultDir = "/var/run/redis-carp-proxy"

// SocketPath is the default hand-over socket of the instance that reads configFile: one
// per profile (redis-carp-proxy-NAME.conf: redis-carp-proxy-NAME.sock).
func SocketPath(configFile string) string {
	stem := "redis-carp-proxy"
	if configFile != "" {
		stem = strings.TrimSuffix(filepath.Base(configFile), ".conf")
		if stem != "redis-carp-proxy" && !strings.HasPrefix(stem, "redis-carp-proxy-") {
			stem = "redis-carp-proxy-" + stem
		}
	}
	return filepath.Join(DefaultDir, stem+".sock")
}

// checkDir creates dir (0700) if missing and refuses one not owned by this user or open
// to group or others.
func checkDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("handoff: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("handoff: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s (%v)", ErrUnsafeDir, dir, fi.Mode())
	}
	return nil
}

// Listener accepts a successor's hand-over connection.
type Listener struct {
	ln   *net.UnixListener
	path string
}

// Listen creates the hand-over socket at path (mode 0600, in a 0700 directory). A socket
// left by a process that is gone is replaced; one a live process answers on is not.
func Listen(path string) (*Listener, error) {
	if err := checkDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("handoff: %s: another process listens there", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("handoff: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("handoff: %w", err)
	}
	ln.SetUnlinkOnClose(false) // the successor may already have its own socket there
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("handoff: %w", err)
	}
	return &Listener{ln: ln, path: path}, nil
}

// Accept waits for a successor; its peer credentials must be this process's user (a
// peer that is not is refused and logged by the caller).
func (l *Listener) Accept() (*Conn, error) {
	uc, err := l.ln.AcceptUnix()
	if err != nil {
		return nil, err
	}
	return newConn(uc)
}

// Close stops accepting. The socket file is left: it is removed when replaced.
func (l *Listener) Close() error { return l.ln.Close() }

// Remove closes the listener and removes its socket if it is still the one at path.
func (l *Listener) Remove() {
	fi, err1 := os.Stat(l.path)
	l.ln.Close()
	if err1 == nil && fi.Mode()&fs.ModeSocket != 0 {
		if c, err := net.DialTimeout("unix", l.path, 100*time.Millisecond); err == nil {
			c.Close() // a successor's: keep it
			return
		}
		os.Remove(l.path)
	}
}

// Dial connects to the running process's hand-over socket. ErrNoPredecessor means there
// is none (no socket, or a stale one): start as usual.
func Dial(path string, timeout time.Duration) (*Conn, error) {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, ErrNoPredecessor
		}
		return nil, fmt.Errorf("handoff: %w", err)
	}
	return newConn(c.(*net.UnixConn))
}

package redissetup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"syscall"
)

// The instances redis init writes require a password by default: every node gets
// requirepass and masterauth from the cluster password file (PassFile, mode 0600), so
// that a host that reaches a Redis port past the pf anchor still cannot read or change
// anything. The file is created with a random password on the first host and must be
// copied (same path, mode 0600) to the other hosts before redis init runs there: every
// node of a cluster needs the same password. The proxy reads it with
// backend-password-file, `redis-carp-proxy cluster …` with --password-file. --no-auth
// writes no password (the pf anchor is then the only barrier).

// DefaultPassFile is where redis init keeps the cluster password by default.
const DefaultPassFile = "/usr/local/etc/redis-carp-proxy/cluster.pass"

// ErrPassFile marks a cluster password file that cannot be used.
var ErrPassFile = errors.New("redis init: unusable cluster password file")

// passRe is what a password written into redis.conf may contain: no blank, quote or
// backslash, so it needs no quoting there.
var passRe = regexp.MustCompile(`^[A-Za-z0-9._~+/=:@%,-]{16,512}$`)

// newPassword returns 32 random bytes as hex.
func newPassword() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// ReadPassFile reads a cluster password file: a regular file that only its owner can
// read, one line of at least 16 characters without blanks or quotes.
func ReadPassFile(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrPassFile, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%w: %s is not a regular file", ErrPassFile, path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("%w: %s has mode %04o; run chmod 600 %s", ErrPassFile, path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrPassFile, err)
	}
	pass := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if !passRe.MatchString(pass) {
		return "", fmt.Errorf("%w: %s must hold one line of 16 to 512 letters, digits or . _ ~ + / = : @ %% , -", ErrPassFile, path)
	}
	return pass, nil
}

// password returns the cluster password (read, or made for a new file) and the change
// creating its file, if any.
func (o *Options) password() (string, *fileChange, error) {
	real := o.real(o.PassFile)
	if _, err := os.Stat(real); err == nil {
		p, err := ReadPassFile(real)
		return p, nil, err
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", nil, fmt.Errorf("%w: %v", ErrPassFile, err)
	}
	p, err := o.randPass()
	if err != nil {
		return "", nil, fmt.Errorf("redis init: make a password: %w", err)
	}
	return p, &fileChange{target: o.PassFile, new: []byte(p + "\n"), mode: 0o600, secret: true}, nil
}

// ownConfigs gives the instance configurations, which hold the password, to root and the
// server's group (mode 0640), so the server reads them and nobody else does.
func (o *Options) ownConfigs(ctx context.Context, fl Flavor) (int, error) {
	acct, found, err := o.lookup(fl.Name)
	if err != nil || !found || o.euid() != 0 {
		return 0, err
	}
	owner := "root:" + fl.Name
	changed := 0
	for _, p := range o.Ports {
		target := fl.ConfPath(p)
		st, err := os.Stat(o.real(target))
		if err != nil {
			if o.DryRun && errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(o.Out, "would chown %s %s\n", owner, target)
				changed++
				continue
			}
			return changed, fmt.Errorf("redis init: %w", err)
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid == 0 && int(sys.Gid) == acct.gid {
			continue
		}
		changed++
		if o.DryRun {
			fmt.Fprintf(o.Out, "would chown %s %s\n", owner, target)
			continue
		}
		if _, err := o.runner.Run(ctx, nil, "chown", owner, o.real(target)); err != nil {
			return changed, fmt.Errorf("redis init: chown %s %s: %w", owner, target, err)
		}
		fmt.Fprintf(o.Out, "chown %s %s\n", owner, target)
	}
	return changed, nil
}

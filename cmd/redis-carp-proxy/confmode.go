package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

// configModeWarning returns a warning when the configuration file holds secrets
// (requirepass, users, backend-password written in it) and users other than its owner and
// the daemon's group (egid) can read it; "" otherwise. The package installs it 0640; the
// *-file keys keep the secrets out of it altogether.
func configModeWarning(path string, cfg *config.Config, egid int) string {
	secrets := cfg.InlineSecrets()
	if path == "" || len(secrets) == 0 {
		return ""
	}
	st, err := os.Stat(path)
	if err != nil {
		return ""
	}
	perm := st.Mode().Perm()
	readers := ""
	switch {
	case perm&0o004 != 0:
		readers = "every user"
	case perm&0o040 != 0:
		if sys, ok := st.Sys().(*syscall.Stat_t); !ok || int(sys.Gid) != egid {
			readers = "its group"
		}
	}
	if readers == "" {
		return ""
	}
	return fmt.Sprintf("configuration file %s (mode %04o) holds %s and %s can read it: chmod 640 (group: the service's) or 600 it, or move the secrets to requirepass-file, users-file, backend-password-file",
		path, perm, strings.Join(secrets, ", "), readers)
}

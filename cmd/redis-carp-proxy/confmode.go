package main

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

// serviceGroup is the group the package creates for the daemon (port/Makefile GROUPS);
// the configuration is installed 0640 root:serviceGroup so that the daemon's user reads it.
const serviceGroup = "redis_carp_proxy"

// serviceGID returns the id of serviceGroup, or -1 where there is no such group.
func serviceGID() int {
	g, err := user.LookupGroup(serviceGroup)
	if err != nil {
		return -1
	}
	id, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1
	}
	return id
}

// configModeWarning returns a warning when the configuration file holds secrets
// (requirepass, users, backend-password written in it) and users other than its owner and
// the members of its group can read it, where that group is neither the daemon's (egid)
// nor the service's (svcGID, -1: none); "" otherwise. The package installs it 0640
// root:redis_carp_proxy; the *-file keys keep the secrets out of it altogether.
func configModeWarning(path string, cfg *config.Config, egid, svcGID int) string {
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
		if sys, ok := st.Sys().(*syscall.Stat_t); !ok || (int(sys.Gid) != egid && (svcGID < 0 || int(sys.Gid) != svcGID)) {
			readers = "its group"
		}
	}
	if readers == "" {
		return ""
	}
	return fmt.Sprintf("configuration file %s (mode %04o) holds %s and %s can read it: chmod 640 (group: the service's) or 600 it, or move the secrets to requirepass-file, users-file, backend-password-file",
		path, perm, strings.Join(secrets, ", "), readers)
}

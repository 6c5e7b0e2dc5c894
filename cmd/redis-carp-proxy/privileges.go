package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

// errNeedsRoot: the configuration asks for something only root may do and the daemon is
// not root.
var errNeedsRoot = errors.New("the configuration needs root")

// geteuid is os.Geteuid; tests run the daemon as another user through it.
var geteuid = os.Geteuid

// reservedPorts is FreeBSD's default net.inet.ip.portrange.reservedhigh + 1 (IPPORT_RESERVED):
// binding a port below it needs PRIV_NETINET_RESERVEDPORT.
const reservedPorts = 1024

// rootNeeds returns, for each key of cfg that needs root, the key and why; none when an
// unprivileged user can run cfg. IP_BINDANY is not among them: refused, it is logged and
// the bind attempted anyway (see internal/gate).
func rootNeeds(cfg *config.Config, pfReload bool) []string {
	var needs []string
	if cfg.CarpDemote && cfg.CarpMode == "freebsd" {
		needs = append(needs, "carp-demote yes (writes the sysctl net.inet.carp.demotion and its state file under /var/run)")
	}
	if pfReload && cfg.PFReload {
		needs = append(needs, "pf-reload yes (replaces the pf table through /dev/pf on SIGHUP)")
	}
	port := func(key, addr string) {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			return
		}
		if n, err := strconv.Atoi(p); err == nil && n > 0 && n < reservedPorts {
			needs = append(needs, fmt.Sprintf("%s %s (a port below %d)", key, addr, reservedPorts))
		}
	}
	port("listen", cfg.Listen)
	if cfg.TLSPort > 0 && cfg.TLSPort < reservedPorts {
		needs = append(needs, fmt.Sprintf("tls-port %d (a port below %d)", cfg.TLSPort, reservedPorts))
	}
	if cfg.AdminListen != "" {
		port("admin-listen", cfg.AdminListen)
	}
	return needs
}

// checkPrivileges refuses to start a daemon whose effective user id euid is not root
// when cfg needs root, naming every key that does and how to run it as root.
func checkPrivileges(cfg *config.Config, euid int) error {
	if euid == 0 {
		return nil
	}
	needs := rootNeeds(cfg, reloadPF)
	if len(needs) == 0 {
		return nil
	}
	return fmt.Errorf("%w, the daemon runs as uid %d: %s; run it as root (sysrc redis_carp_proxy_user=root) or change these keys",
		errNeedsRoot, euid, strings.Join(needs, "; "))
}

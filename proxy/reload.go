package proxy

import (
	"strings"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// reloadable lists the keys Reload applies to a running proxy. Keys not listed need a
// restart: listeners, the backend connection pools, TLS material, CARP and pf settings.
// Limits read per command (proto-*, client-query-buffer-limit, client-idle-timeout,
// output buffer limits) apply to open connections at their next command; those fixed when a
// connection is set up (client-pipeline-depth, tcp-keepalive) apply to new connections. A
// connection authenticated as a user the reload removes is closed at its next command, one
// whose user became read-only (or read-write) is downgraded (upgraded) (rights.go).
var reloadable = map[string]bool{
	"maxclients": true, "client-pipeline-depth": true, "client-idle-timeout": true, "tcp-keepalive": true,
	"proto-max-bulk-len": true, "proto-max-multibulk-len": true, "proto-inline-max-size": true,
	"client-query-buffer-limit": true, "requirepass": true, "users": true, "enable-flushall": true, "enable-admin-commands": true,
	"announce-address": true, "shutdown-timeout": true, "client-output-buffer-limit": true,
	"client-output-buffer-limit-pubsub": true, "maxmemory-clients": true, "deny-commands": true,
	"backend-connect-timeout": true, "backend-read-timeout": true, "max-redirects": true,
	"tryagain-retries": true, "tryagain-backoff": true, "slowlog-log-slower-than": true,
	"slowlog-max-len": true, "backend-suspect-after": true, "slotmap-fast-refresh-interval": true, "backend-busy-timeout": true,
	"redirect-budget": true, "unauthenticated-max-bulk-len": true, "unauthenticated-max-multibulk-len": true,
	"client-auth-timeout": true, "auth-max-failures": true, "requirepass-file": true, "users-file": true,
	// Applied by the daemon (its log handler), not by the proxy.
	"log-level": true,
}

// Reload applies the reloadable keys of cfg to the running proxy without dropping
// connections. It returns the keys it applied and the changed keys that need a restart to
// take effect (those keep their old value).
func (s *Server) Reload(cfg *Config) (applied, needRestart []string) {
	old := s.conf()
	next := *old
	for _, k := range config.Diff(old, cfg) {
		if !reloadable[k] {
			needRestart = append(needRestart, k)
			continue
		}
		if err := config.CopyKey(&next, cfg, k); err != nil {
			needRestart = append(needRestart, k)
			continue
		}
		applied = append(applied, k)
	}
	s.setDeny(next.DenyCommands)
	s.cfgp.Store(&next)
	// Every loop sends its clients' next command through the rights check (rights.go)
	// before Reload returns: a command read after a reload is judged by it.
	for _, l := range s.loops {
		l.call(l.recheckRights, time.Second)
	}
	s.metrics.reloads.WithLabelValues("ok").Inc()
	s.log.Info("configuration reloaded", "applied", strings.Join(applied, " "), "need_restart", strings.Join(needRestart, " "))
	return applied, needRestart
}

// ReloadFailed records a reload that was refused (the old configuration stays).
func (s *Server) ReloadFailed(err error) {
	s.metrics.reloads.WithLabelValues("error").Inc()
	s.log.Error("configuration reload failed; keeping the running configuration", "err", err)
}

func (s *Server) setDeny(names []string) {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[strings.ToLower(n)] = true
	}
	s.deny.Store(&m)
}

// denied returns the error reply for a command on the deny-list, or nil.
func (s *Server) denied(name []byte) []byte {
	if !s.isDenied(name) {
		return nil
	}
	s.metrics.denied.Inc()
	return resp.ErrorReply("ERR command '" + lowerName(name) + "' is denied by the proxy configuration (deny-commands)")
}

// isDenied reports whether deny-commands lists the command.
func (s *Server) isDenied(name []byte) bool {
	m := *s.deny.Load()
	return len(m) > 0 && m[lowerName(name)]
}

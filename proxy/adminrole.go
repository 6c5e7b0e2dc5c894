package proxy

// What acts on or reveals other clients is for the admin role, as Redis's @admin and
// @dangerous ACL categories: listing clients (their addresses, names and users), killing
// them, reading or resetting the slow log (other users' commands with their values), the
// hot key names, and the admin commands of enable-admin-commands. A client is an admin when
// the proxy requires no authentication or it authenticated with requirepass (it is then
// Redis's default user, which has every right), when it authenticated as a user flagged
// :admin, or as any read-write user while enable-admin-commands is set. Read-only users
// never are. Named users without :admin are the application's: they cannot see or touch
// other clients.

// adminOnlyCmds are the commands and subcommands of the admin role.
var adminOnlyCmds = map[string]bool{
	"client|list": true, "client|kill": true, "client|unblock": true, "client|pause": true, "client|unpause": true,
	"slowlog": true, "proxy|hotkeys": true, "proxy|slowlog": true, "latency|reset": true, "monitor": true,
	"latency|latest": true, "latency|history": true, "latency|doctor": true, "latency|graph": true,
	"config|set": true, "config|resetstat": true, "config|rewrite": true,
}

// isAdmin reports whether the session has the admin role now (a reload that changes the
// users or enable-admin-commands applies at once).
func (ss *session) isAdmin() bool {
	s := ss.s
	if !s.authRequired() {
		return true
	}
	if !ss.authed || ss.readonly {
		return false
	}
	cfg := s.conf()
	if cfg.EnableAdminCommands {
		return true
	}
	ss.csMu.Lock()
	user := ss.cs.user
	ss.csMu.Unlock()
	if user == "" || user == "default" {
		return true // requirepass: Redis's default user
	}
	for _, u := range cfg.Users {
		if u.Name == user && u.Admin {
			return true
		}
	}
	return false
}

// adminRefusal returns the NOPERM reply for a command of the admin role run by a client
// without it, or nil.
func (ss *session) adminRefusal(args [][]byte) []byte {
	name := lowerName(args[0])
	full := name
	if len(args) > 1 && (name == "client" || name == "proxy" || name == "latency" || name == "config") {
		full += "|" + lowerName(args[1])
	}
	if !adminOnlyCmds[name] && !adminOnlyCmds[full] {
		return nil
	}
	if ss.isAdmin() {
		return nil
	}
	return noPerm(full)
}

package proxy

// A reload that removes a user, or makes it read-only, applies to the connections that
// authenticated as it: at the next command a removed user's connection gets an error and
// is closed, a user made read-only is downgraded (and one made read-write upgraded). So
// does one that removes requirepass while users remain, for the default user. The check
// runs where every command of a session passes (authGate); event-loop clients are sent
// to that path once after a reload (loop.recheckRights).

var replyUserRemoved = []byte("-ERR the user of this connection was removed by a configuration reload; closing the connection\r\n")

// recheckRights brings an authenticated session's rights up to the configuration in force;
// it returns an error reply (and marks r to close the connection) if its user is gone.
func (ss *session) recheckRights(r *request) []byte {
	cfg := ss.s.conf()
	if ss.rightsCfg == cfg {
		return nil
	}
	ss.rightsCfg = cfg
	if !ss.s.authRequired() {
		return nil
	}
	ss.csMu.Lock()
	user := ss.cs.user
	ss.csMu.Unlock()
	if user == "" || user == "default" {
		if cfg.RequirePass != "" {
			return nil
		}
	} else {
		for _, u := range cfg.Users {
			if u.Name == user {
				ss.readonly = u.ReadOnly
				return nil
			}
		}
	}
	ss.authed = false
	ss.log().Info("closing a connection whose user was removed by a reload", "client_id", ss.id, "user", user)
	r.slot = slotQuit
	return replyUserRemoved
}

// recheckRights sends every client of the loop through the slow path for its next
// command, where its session's rights are checked again (after a reload of the users).
func (l *loop) recheckRights() {
	for c := range l.clients {
		c.simple = false
	}
}

package proxy

// validClientAttr reports whether v may be a client name or a CLIENT SETINFO value: as in
// Redis, printable ASCII without spaces ('!' to '~'), so that CLIENT LIST, which writes
// them unquoted on one line per client, cannot be given forged fields or lines.
func validClientAttr(v []byte) bool {
	for _, c := range v {
		if c < '!' || c > '~' {
			return false
		}
	}
	return true
}

var (
	replyBadClientName = []byte("-ERR Client names cannot contain spaces, newlines or special characters.\r\n")
	replyHelloNoAuth   = []byte("-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n")
)

// helloAuth authenticates for HELLO's AUTH option; it returns the error reply, or nil.
func (ss *session) helloAuth(r *request, user, pass string) []byte {
	ro, ok := ss.s.checkAuth(user, pass)
	if !ss.s.authRequired() && user == "default" {
		ro, ok = false, true // as Redis's passwordless default user
	}
	if !ok {
		return ss.authFailed(r, user)
	}
	ss.authenticated(user, ro)
	return nil
}

// authenticated records a successful AUTH (or HELLO AUTH) as user, read-only or not.
func (ss *session) authenticated(user string, readonly bool) {
	ss.authed, ss.readonly, ss.rightsCfg = true, readonly, ss.s.conf()
	ss.csMu.Lock()
	ss.cs.user = user
	ss.csMu.Unlock()
}

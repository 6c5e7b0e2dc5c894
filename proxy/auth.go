package proxy

import (
	"crypto/sha256"
	"crypto/subtle"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"
)

// authRequired reports whether clients must authenticate.
func (s *Server) authRequired() bool {
	return s.conf().RequirePass != "" || len(s.conf().Users) > 0
}

// checkAuth validates credentials; user "" or "default" means requirepass.
func (s *Server) checkAuth(user, pass string) (readonly, ok bool) {
	// Digests of equal length: the time does not depend on how long the password is (a
	// plain ConstantTimeCompare returns at once when the lengths differ).
	eq := func(a, b string) bool {
		da, db := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
		return subtle.ConstantTimeCompare(da[:], db[:]) == 1
	}
	if user == "" || user == "default" {
		return false, s.conf().RequirePass != "" && eq(pass, s.conf().RequirePass)
	}
	for _, u := range s.conf().Users {
		if u.Name == user && eq(pass, u.Password) {
			return u.ReadOnly, true
		}
	}
	return false, false
}

// readonlyDenied are commands that may write although their flags do not say so (scripts
// decide at run time); read-only users use the _RO variants.
var readonlyDenied = map[string]bool{"eval": true, "evalsha": true, "fcall": true}

var (
	replyNoAuth    = []byte("-NOAUTH Authentication required.\r\n")
	replyWrongPass = []byte("-WRONGPASS invalid username-password pair or user is disabled.\r\n")
)

// authGate answers AUTH and refuses everything but AUTH/HELLO/QUIT/RESET until the client
// is authenticated, and write commands for read-only users. It returns nil to go on.
func (ss *session) authGate(r *request) []byte {
	name := lowerName(r.args[0])
	if name == "auth" {
		var user, pass string
		switch len(r.args) {
		case 2:
			pass = string(r.args[1])
		case 3:
			user, pass = string(r.args[1]), string(r.args[2])
		default:
			return wrongArgs("auth")
		}
		if !ss.s.authRequired() {
			return resp.ErrorReply("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
		}
		ro, ok := ss.s.checkAuth(user, pass)
		if !ok {
			return ss.authFailed(r, user)
		}
		ss.authenticated(user, ro)
		return replyOK
	}
	if ss.authed {
		if reply := ss.recheckRights(r); reply != nil {
			return reply
		}
	}
	if !ss.authed {
		switch name {
		case "hello", "quit", "reset": // as Redis's no_auth commands
			return nil
		}
		return replyNoAuth
	}
	if ss.readonly {
		return ss.s.readonlyRefusal(r.args) // deny by default (readonly.go)
	}
	return ss.adminRefusal(r.args) // adminrole.go
}

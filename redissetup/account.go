package redissetup

import (
	"fmt"
	"os/user"
	"strconv"
)

// account is a user and its primary group as the running system knows them.
type account struct {
	uid, gid int
}

// lookupAccount returns the account of name, or ok=false when there is no such user.
func lookupAccount(name string) (account, bool, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, ok := err.(user.UnknownUserError); ok {
			return account{}, false, nil
		}
		return account{}, false, err
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return account{}, false, fmt.Errorf("user %s: uid %q gid %q", name, u.Uid, u.Gid)
	}
	return account{uid, gid}, true, nil
}

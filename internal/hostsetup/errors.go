package hostsetup

import "errors"

// ErrBadPeer is a pfsync-peer that is not an IP address.
var ErrBadPeer = errors.New("not an IP address")

// ErrPFRules is a pf_rules setting that is not a plain absolute path (setup cannot tell
// which file rc.d/pf loads).
var ErrPFRules = errors.New("not a plain absolute path; set pf_rules to the file rc.d/pf loads, or leave it unset for /etc/pf.conf")

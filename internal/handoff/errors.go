package handoff

import "errors"

// Sentinel errors.
var (
	ErrBadFrame   = errors.New("handoff: bad frame")
	ErrPeerCreds  = errors.New("handoff: peer is not this service's user")
	ErrFDMismatch = errors.New("handoff: descriptor count does not match the message")
	ErrTooMany    = errors.New("handoff: too many descriptors for one message")
	ErrOtherInst  = errors.New("handoff: peer is another instance (another configuration file)")
	// ErrUnsafeDir is returned for a socket directory others could reach.
	ErrUnsafeDir = errors.New("handoff: socket directory must be owned by this user and mode 0700")
	// ErrNoPredecessor is returned by Dial when no process listens at the path.
	ErrNoPredecessor = errors.New("handoff: no running process to take over from")
)

package handover

import "errors"

// Sentinel errors.
var (
	ErrBadFrame   = errors.New("handover: bad frame")
	ErrPeerCreds  = errors.New("handover: peer is not this service's user")
	ErrFDMismatch = errors.New("handover: descriptor count does not match the message")
	ErrTooMany    = errors.New("handover: too many descriptors for one message")
	ErrOtherInst  = errors.New("handover: peer is another instance (another configuration file)")
	// ErrUnsafeDir is returned for a socket directory others could reach.
	ErrUnsafeDir = errors.New("handover: socket directory must be owned by this user and mode 0700")
	// ErrNoPredecessor is returned by Dial when no process listens at the path.
	ErrNoPredecessor = errors.New("handover: no running process to take over from")
)

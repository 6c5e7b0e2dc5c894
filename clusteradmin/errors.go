package clusteradmin

import "errors"

// Sentinel errors; callers match them with errors.Is.
var (
	// ErrBadArgs is returned for unusable node lists or options.
	ErrBadArgs = errors.New("cluster: bad arguments")
	// ErrNotEmpty is returned by Create when a node is not a fresh, empty, cluster-enabled
	// node, and by Reset when a node holds keys and Force is not set.
	ErrNotEmpty = errors.New("cluster: node not empty")
	// ErrNoLayout is returned by Create when replicas cannot all be placed on another
	// host than their master.
	ErrNoLayout = errors.New("cluster: no layout with every replica on another host than its master")
	// ErrTimeout is returned when the cluster does not converge in time.
	ErrTimeout = errors.New("cluster: timed out")
	// ErrNeedYes is returned by Reset without Yes: it only says what it would do.
	ErrNeedYes = errors.New("cluster reset: refusing without --yes")
)

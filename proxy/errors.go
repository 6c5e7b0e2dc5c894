package proxy

import "errors"

// Errors a command can end with before any backend answered it. Their text is sent to the
// client after "-ERR proxy: " (or as is, for Redis-style errors with their own prefix).
var (
	// ErrNotSent means the command was never written to a backend: it is safe to retry.
	ErrNotSent = errors.New("command not sent")
	// errFateUnknown means the connection broke after the command was written; the command
	// may or may not have been executed, so it is never re-sent.
	errFateUnknown = errors.New("connection to the cluster node lost after the command was sent; it may or may not have been executed")
	// errBackendTimeout means the node did not answer within backend-read-timeout; the
	// command may or may not have been executed.
	errBackendTimeout = errors.New("cluster node did not answer in time; the command may or may not have been executed")
	// errBusyTimeout means the node was known to be executing (-BUSY, -LOADING) or paused
	// and still did not answer within backend-busy-timeout (busy.go); the command may or
	// may not have been executed.
	errBusyTimeout = errors.New("cluster node stayed busy (a script, loading or a pause) beyond backend-busy-timeout; the command may or may not have been executed")
	// errFailedOver means the command was written to a node that stopped answering and
	// whose slots the cluster then gave to another node; it may or may not have been
	// executed (a frozen master may still run it when it wakes up), so it is never re-sent.
	errFailedOver = errors.New("cluster node stopped answering and was replaced after the command was sent; it may or may not have been executed")
	// ErrNoSlotMap means no complete slot map has been loaded yet.
	ErrNoSlotMap = errors.New("no slot map: cluster not reachable")
	// errShuttingDown is returned to commands still queued when the proxy stops.
	errShuttingDown = errors.New("proxy is shutting down")
	// errTooManyRedirects ends a MOVED/ASK loop.
	errTooManyRedirects = errors.New("too many cluster redirections")
	// errNoLoops is returned by AdoptClient when no event loop runs (handoff.go).
	errNoLoops = errors.New("proxy: no event loop to adopt the client")
)

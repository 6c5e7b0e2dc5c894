package redissetup

import "errors"

// Sentinel errors of redis init; callers match them with errors.Is.
var (
	// ErrBadOptions is returned for missing or invalid options (ports, bind, flavor).
	ErrBadOptions = errors.New("redis init: bad options")
	// ErrDefaultConfChoice is returned when the default configuration file exists and
	// the operator did not say whether to keep or remove it.
	ErrDefaultConfChoice = errors.New("redis init: the default configuration exists; choose --default-conf keep or --default-conf remove")
)

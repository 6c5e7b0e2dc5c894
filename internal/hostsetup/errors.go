package hostsetup

import "errors"

// ErrNotRoot is returned when setup would change the running system without root.
var ErrNotRoot = errors.New("setup needs root to change the running system (or use --dry-run / --root DIR)")

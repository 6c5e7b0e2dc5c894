//go:build !linux && !freebsd

package gate

// setFreeBind is nil here: the address must exist when the listener opens.
var setFreeBind func(fd int, v6 bool) error

var freeBindOptional = false

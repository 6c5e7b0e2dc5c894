package proxy

// SetPanicHook makes f run where each command starts being served (see panicHook); the
// returned function removes it.
func SetPanicHook(f func(where string, args [][]byte)) (restore func()) {
	old := panicHook.Swap(&f)
	return func() { panicHook.Store(old) }
}

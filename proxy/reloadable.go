package proxy

// Reloadable reports whether a SIGHUP reload applies the configuration key to a running
// proxy (the reloadable table in reload.go); other keys need a restart. The manual page
// redis-carp-proxy.conf(5) is generated from it (tools/mkman).
func Reloadable(key string) bool { return reloadable[key] }

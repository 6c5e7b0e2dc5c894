package proxy

import "strings"

// CONFIG GET never returns a secret: the proxy's requirepass and the nodes' passwords
// (requirepass, masterauth, TLS key passphrases) and the replication user are replaced
// with "(redacted)" when set (empty stays empty, so whether one is set is visible). Read-
// only users are refused CONFIG altogether (readonly.go).

// redactedValue replaces a secret in CONFIG GET.
const redactedValue = "(redacted)"

// secretConfig reports whether a CONFIG parameter holds a secret.
func secretConfig(name string) bool {
	return strings.Contains(name, "pass") || name == "masterauth" || name == "masteruser"
}

func redactConfigValue(name, v string) string {
	if v != "" && secretConfig(name) {
		return redactedValue
	}
	return v
}

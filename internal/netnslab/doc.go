// Package netnslab builds small networks of Linux network namespaces for end-to-end tests:
// hosts on one bridge (the bridge lives in its own namespace, nothing is created in the
// root namespace), processes started inside them and tracked by PID, dialing into a
// namespace from the test process, and a teardown that proves nothing is left behind.
// Namespace names carry a per-run prefix so that parallel runs do not collide. Tests use
// addresses from 198.51.100.0/24 (TEST-NET-2) only.
package netnslab

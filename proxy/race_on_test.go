//go:build race

package proxy_test

// raceEnabled: the race detector multiplies memory, so RSS bounds are not checked.
const raceEnabled = true

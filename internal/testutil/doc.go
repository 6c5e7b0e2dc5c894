// Package testutil holds the helpers the tests of several packages share: golden files
// rewritten with `go test -update`, a buffer that goroutines write while the test reads
// it, polling for a condition, and sums of metric series. Only tests import it.
package testutil

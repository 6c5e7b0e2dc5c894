// Package testutil holds the helpers the tests of several packages share: golden files
// rewritten with `go test -update`. Only tests import it.
package testutil

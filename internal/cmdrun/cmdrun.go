// Package cmdrun is the seam through which redis-carp-proxy runs external FreeBSD tools
// (pfctl, kldstat, kldload, sysctl, service, chown): production code uses Exec, tests a recorder
// (package cmdruntest) that sees the exact argv and stdin.
package cmdrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Runner runs one command to completion. stdin may be nil. It returns the command's
// standard output; a command that exits non-zero returns an *Error carrying its stderr.
type Runner interface {
	Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error)
}

// Error is a command that could not be started or exited non-zero.
type Error struct {
	Argv     []string
	ExitCode int // -1 when the command did not run
	Stderr   string
	Err      error
}

func (e *Error) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("%s: %s", strings.Join(e.Argv, " "), msg)
}

func (e *Error) Unwrap() error { return e.Err }

// ExitCode returns the exit status of a command error, or -1 when err is not one.
func ExitCode(err error) int {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.ExitCode
	}
	return -1
}

// Exec runs commands with os/exec.
type Exec struct{}

// Run implements Runner.
func (Exec) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return stdout.Bytes(), &Error{Argv: append([]string{name}, args...), ExitCode: code, Stderr: stderr.String(), Err: err}
	}
	return stdout.Bytes(), nil
}

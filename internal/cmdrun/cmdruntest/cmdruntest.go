// Package cmdruntest provides a recording cmdrun.Runner for tests: it logs every argv and
// stdin and answers from canned outputs recorded from the real tools.
package cmdruntest

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun"
)

// Reply is the canned result of a command.
type Reply struct {
	Stdout string
	Stderr string
	Exit   int // non-zero: the command fails with a *cmdrun.Error
}

// Recorder records commands. Replies are matched on the full argv joined by spaces; a
// command without a reply succeeds with empty output.
type Recorder struct {
	mu      sync.Mutex
	Replies map[string]Reply
	log     strings.Builder
}

// New returns a Recorder answering with replies (argv joined by spaces → Reply).
func New(replies map[string]Reply) *Recorder {
	if replies == nil {
		replies = map[string]Reply{}
	}
	return &Recorder{Replies: replies}
}

// Run implements cmdrun.Runner.
func (r *Recorder) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	argv := append([]string{name}, args...)
	key := strings.Join(argv, " ")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log.WriteString("$ " + key + "\n")
	if stdin != nil {
		for _, l := range strings.SplitAfter(string(stdin), "\n") {
			if l != "" {
				r.log.WriteString(strings.TrimRight("> "+strings.TrimSuffix(l, "\n"), " ") + "\n")
			}
		}
	}
	rep := r.Replies[key]
	if rep.Exit != 0 {
		return []byte(rep.Stdout), &cmdrun.Error{Argv: argv, ExitCode: rep.Exit, Stderr: rep.Stderr, Err: errors.New("exit status " + strconv.Itoa(rep.Exit))}
	}
	return []byte(rep.Stdout), nil
}

// Log returns every command run so far: "$ argv" lines, each followed by "> line" for
// each line of its stdin.
func (r *Recorder) Log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

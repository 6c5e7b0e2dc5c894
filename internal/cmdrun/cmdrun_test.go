package cmdrun

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestExecPassesStdinAndReportsStderr(t *testing.T) {
	out, err := Exec{}.Run(context.Background(), []byte("rules\n"), "cat")
	if err != nil || string(out) != "rules\n" {
		t.Fatalf("cat: %q, %v", out, err)
	}
	_, err = Exec{}.Run(context.Background(), nil, "sh", "-c", "echo partial; echo 'pfctl: Table does not exist.' >&2; exit 3")
	var ce *Error
	if !errors.As(err, &ce) || ce.ExitCode != 3 || ExitCode(err) != 3 {
		t.Fatalf("got %v", err)
	}
	if got := err.Error(); !strings.Contains(got, "sh -c") || !strings.Contains(got, "pfctl: Table does not exist.") {
		t.Fatalf("error %q should name the command and carry stderr", got)
	}
	if _, err := (Exec{}).Run(context.Background(), nil, "/nonexistent/pfctl"); ExitCode(err) != -1 || err == nil {
		t.Fatalf("missing binary: %v", err)
	}
}

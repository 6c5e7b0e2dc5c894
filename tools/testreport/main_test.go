package main

import (
	"bytes"
	"os"
	"testing"
)

// testdata/go-test.json is `go test -json` of a passing package with a skipped test and
// of a failing one (a skipped and a failing subtest, a skip message on two lines).
func TestReport(t *testing.T) {
	in, err := os.ReadFile("testdata/go-test.json")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r := newReport(&out)
	if err := r.read(bytes.NewReader(in), func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	r.finish()
	want := `ok  	j/ok	0.01s
--- FAIL: TestC (0.00s)
    --- FAIL: TestC/y (0.00s)
        a_test.go:5: boom
FAIL
FAIL	j	0.01s

skipped tests: 3
SKIPPED: j/ok TestS: needs root
SKIPPED: j TestB: no php / second line
SKIPPED: j TestC/x: sub skip

ok  	j/ok	0.01s
FAIL	j	0.01s
FAIL
`
	if out.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}

// Lines that are not events pass through, and the command's exit status is kept.
func TestRunKeepsExitStatus(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"sh", "-c", `echo 'not json'; printf '%s\n' '{"Action":"output","Package":"p","Output":"ok  \tp\t0.01s\n"}' '{"Action":"pass","Package":"p"}'; exit 3`}, &out, &errb)
	if code != 3 {
		t.Fatalf("exit status %d, want 3 (stderr %q)", code, errb.String())
	}
	if want := "not json\nok  \tp\t0.01s\n"; out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
	if code := run([]string{"true"}, &out, &errb); code != 0 {
		t.Fatalf("true: exit status %d", code)
	}
}

// Command testreport runs `go test -json …` and prints what plain `go test` would (the
// ok/FAIL line of each package, and the output of failing tests), then the tests that
// skipped and why, then the packages' result lines again so the output still ends with
// them. It exits with go test's exit status. `make test` runs the suite through it, so
// a skipped real-client or network-namespace test is visible in CI output.
//
// Usage: testreport go test -json [flags] [packages]
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command args, reports its JSON output on stdout and returns its exit
// status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: testreport go test -json [flags] [packages]")
		return 2
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stderr = os.Stdin, stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(stderr, "testreport:", err)
		return 2
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "testreport:", err)
		return 2
	}
	w := bufio.NewWriter(stdout)
	r := newReport(w)
	if err := r.read(out, w.Flush); err != nil {
		fmt.Fprintln(stderr, "testreport:", err)
		io.Copy(io.Discard, out) // let go test finish
	}
	err = cmd.Wait()
	r.finish()
	w.Flush()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.ExitCode() > 0:
		return ee.ExitCode()
	default:
		fmt.Fprintln(stderr, "testreport:", err)
		return 1
	}
}

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// pkgState is what one package has printed so far.
type pkgState struct {
	order  []string            // tests in the order they started
	header map[string]string   // the test's "--- FAIL: …" line
	lines  map[string][]string // the test's other output, without === lines
	result map[string]string   // pass, fail or skip
	out    []string            // output outside any test
}

// report turns test2json events into plain go test output plus a skip summary.
type report struct {
	w       io.Writer
	pkgs    map[string]*pkgState
	results []string // every package's result lines, in the order printed
	skipped []string // "SKIPPED: pkg TestX: reason"
	failed  bool
}

func newReport(w io.Writer) *report {
	return &report{w: w, pkgs: map[string]*pkgState{}}
}

// read consumes the JSON stream; flush is called after each package's output.
func (r *report) read(in io.Reader, flush func() error) error {
	br := bufio.NewReader(in)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			r.line(line)
			if err := flush(); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (r *report) line(line string) {
	var e event
	if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &e) != nil {
		io.WriteString(r.w, line) // not an event: go test printed it as is
		return
	}
	switch e.Action {
	case "build-output":
		io.WriteString(r.w, e.Output)
		return
	case "start", "run", "pause", "cont", "bench", "build-fail":
		return
	}
	p := r.pkgs[e.Package]
	if p == nil {
		p = &pkgState{header: map[string]string{}, lines: map[string][]string{}, result: map[string]string{}}
		r.pkgs[e.Package] = p
	}
	if e.Test == "" {
		switch e.Action {
		case "output":
			p.out = append(p.out, e.Output)
		case "pass", "fail", "skip":
			r.packageDone(e.Package, p, e.Action)
			delete(r.pkgs, e.Package)
		}
		return
	}
	if _, seen := p.lines[e.Test]; !seen {
		p.order = append(p.order, e.Test)
		p.lines[e.Test] = nil
	}
	switch e.Action {
	case "output":
		t := strings.TrimLeft(e.Output, " ")
		switch {
		case strings.HasPrefix(t, "=== "):
		case strings.HasPrefix(t, "--- "):
			p.header[e.Test] = t
		default:
			p.lines[e.Test] = append(p.lines[e.Test], e.Output)
		}
	case "pass", "fail", "skip":
		p.result[e.Test] = e.Action
		if e.Action == "skip" {
			r.skipped = append(r.skipped, fmt.Sprintf("SKIPPED: %s %s: %s", e.Package, e.Test, skipReason(p.lines[e.Test])))
		}
	}
}

// packageDone prints what plain go test prints for a package: the output of its failing
// tests (and of a crash) when it failed, then its result line.
func (r *report) packageDone(pkg string, p *pkgState, action string) {
	if action == "fail" {
		r.failed = true
		for _, t := range p.order {
			if !strings.Contains(t, "/") {
				r.printTest(p, t, 0)
			}
		}
	}
	for _, l := range p.out {
		isResult := strings.HasPrefix(l, "ok  ") || strings.HasPrefix(l, "?   ") || strings.HasPrefix(l, "FAIL\t")
		if isResult {
			r.results = append(r.results, l)
		}
		if isResult || action == "fail" && l != "PASS\n" {
			io.WriteString(r.w, l)
		}
	}
}

// printTest prints a test that did not pass or skip as go test does without -v: its
// "--- FAIL" line, its log indented below it, then its subtests one level deeper.
func (r *report) printTest(p *pkgState, t string, depth int) {
	if res := p.result[t]; res == "pass" || res == "skip" {
		return
	}
	indent := strings.Repeat("    ", depth)
	if h := p.header[t]; h != "" {
		io.WriteString(r.w, indent+h)
	}
	for _, l := range p.lines[t] {
		io.WriteString(r.w, indent+l)
	}
	for _, sub := range p.order {
		if strings.HasPrefix(sub, t+"/") && !strings.Contains(sub[len(t)+1:], "/") {
			r.printTest(p, sub, depth+1)
		}
	}
}

// logLine is the start of a t.Log/t.Skip line: "    file_test.go:12: ".
var logLine = regexp.MustCompile(`^\s+[^\s:]+\.go:\d+: `)

// skipReason is the test's last log message (t.Skip's), on one line.
func skipReason(lines []string) string {
	start := -1
	for i, l := range lines {
		if logLine.MatchString(l) {
			start = i
		}
	}
	if start < 0 {
		return "(no reason given)"
	}
	var parts []string
	for i, l := range lines[start:] {
		if i == 0 {
			l = logLine.ReplaceAllString(l, "")
		}
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " / ")
}

// finish prints the skip summary and, after it, the packages' result lines again, so
// the output ends as plain go test's does.
func (r *report) finish() {
	if len(r.skipped) > 0 {
		fmt.Fprintf(r.w, "\nskipped tests: %d\n", len(r.skipped))
		for _, s := range r.skipped {
			fmt.Fprintln(r.w, s)
		}
		fmt.Fprintln(r.w)
		for _, l := range r.results {
			io.WriteString(r.w, l)
		}
	}
	if r.failed {
		fmt.Fprintln(r.w, "FAIL")
	}
}

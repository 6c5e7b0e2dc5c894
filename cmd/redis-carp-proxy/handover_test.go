package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun/cmdruntest"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/handover"
)

// handoverRun runs `handover` with a configuration in vip mode for vip (no admin
// listener) and the given flags, recording in a state file of the test's own.
func handoverRun(t *testing.T, state, vip string, flags ...string) (string, error) {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "t.conf")
	if err := os.WriteFile(conf, []byte("cluster-seeds 127.0.0.1:7000\ncarp-mode vip\nvip "+vip+"\nlisten "+net.JoinHostPort(vip, "6379")+"\nadmin-listen \"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	args := append([]string{"handover", "-c", conf, "--state-file", state}, flags...)
	err := run(args, &out, &errb, cmdruntest.New(nil))
	return out.String() + errb.String(), err
}

func readState(t *testing.T, f string) string {
	b, _ := os.ReadFile(f)
	return string(b)
}

// A host that does not hold the VIP (198.51.100.100 is on no interface here: vip mode
// reads it BACKUP) is demoted so it stays BACKUP, and --undo gives the VIP back.
func TestHandoverCommandNotServing(t *testing.T) {
	if _, err := net.InterfaceAddrs(); err != nil {
		t.Skip(err)
	}
	state := filepath.Join(t.TempDir(), "rcp.handover")
	out, err := handoverRun(t, state, "198.51.100.100")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "198.51.100.100: not served by this host") || readState(t, state) != "240\n" {
		t.Fatalf("output:\n%s\nstate %q", out, readState(t, state))
	}
	out, err = handoverRun(t, state, "198.51.100.100", "--undo")
	if err != nil || !strings.Contains(out, "handover undone") || readState(t, state) != "0\n" {
		t.Fatalf("undo: %v\n%s\nstate %q", err, out, readState(t, state))
	}
}

// A host that holds the VIP (vip mode, 127.0.0.1 is on lo) refuses without a ready peer,
// changing nothing; with a ready peer that never takes over (no preemption) it gives up at
// --timeout and undoes its demotion.
func TestHandoverCommandRefusesAndTimesOut(t *testing.T) {
	state := filepath.Join(t.TempDir(), "rcp.handover")
	out, err := handoverRun(t, state, "127.0.0.1")
	if !errors.Is(err, handover.ErrNoPeer) || !strings.Contains(err.Error(), "handover-peers") {
		t.Fatalf("no peers: %v\n%s", err, out)
	}
	if _, serr := os.Stat(state); serr == nil {
		t.Fatal("a refused handover wrote its state file")
	}
	// A peer that is BACKUP with a complete slot map.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not active (CARP state BACKUP), slot map epoch 3 covers all 16384 slots (3 masters)")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	start := time.Now()
	out, err = handoverRun(t, state, "127.0.0.1", "--handover-peers", ln.Addr().String(), "--timeout", "1s")
	if !errors.Is(err, handover.ErrTimeout) || !strings.Contains(err.Error(), "127.0.0.1: this host MASTER") || !strings.Contains(err.Error(), "demotion is undone") {
		t.Fatalf("timeout: %v\n%s", err, out)
	}
	if took := time.Since(start); took < time.Second || took > 5*time.Second {
		t.Fatalf("gave up after %v", took)
	}
	if readState(t, state) != "0\n" {
		t.Fatalf("state after the undone handover: %q", readState(t, state))
	}
	// The rc script's stop never fails, and leaves the host demoted (no proxy runs).
	out, err = handoverRun(t, state, "127.0.0.1", "--on-stop")
	if err != nil || !strings.Contains(out, "not handing over before stop") || readState(t, state) != "240\n" {
		t.Fatalf("on stop: %v\n%s\nstate %q", err, out, readState(t, state))
	}
	if _, err := os.Stat(state + ".stopped"); err != nil {
		t.Fatal("stop's handover is not marked for the next start")
	}
	// start undoes stop's handover (no admin listener to wait for), and only that.
	if out, err = handoverRun(t, state, "127.0.0.1", "--undo", "--after-stop"); err != nil || readState(t, state) != "0\n" {
		t.Fatalf("after stop: %v\n%s\nstate %q", err, out, readState(t, state))
	}
	os.WriteFile(state, []byte("240\n"), 0o644) // a handover made on purpose
	if out, err = handoverRun(t, state, "127.0.0.1", "--undo", "--after-stop"); err != nil || readState(t, state) != "240\n" {
		t.Fatalf("start undid a deliberate handover: %v\n%s", err, out)
	}
}

func TestHandoverCommandOffAndUsage(t *testing.T) {
	state := filepath.Join(t.TempDir(), "rcp.handover")
	if out, err := handoverRun(t, state, "127.0.0.1", "--on-stop", "--handover-on-stop", "no"); err != nil || out != "" {
		t.Fatalf("handover-on-stop no: %v\n%s", err, out)
	}
	if _, err := os.Stat(state); err == nil {
		t.Fatal("handover-on-stop no demoted")
	}
	for _, bad := range [][]string{{"--after-stop"}, {"--undo", "--exit"}, {"extra"}} {
		if _, err := handoverRun(t, state, "127.0.0.1", bad...); err == nil || !strings.Contains(err.Error(), "usage") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	var out, errb bytes.Buffer
	conf := filepath.Join(t.TempDir(), "s.conf")
	os.WriteFile(conf, []byte("cluster-seeds 127.0.0.1:7000\n"), 0o644)
	if err := run([]string{"handover", "-c", conf, "--state-file", state}, &out, &errb, cmdruntest.New(nil)); err == nil || !strings.Contains(err.Error(), "static") {
		t.Fatalf("static mode: %v", err)
	}
}

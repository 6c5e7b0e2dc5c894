package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// --exit stops the service through the supervisor's pid file and waits until it is gone;
// a pid file that names nothing is an error, never a hang.
func TestHandoverExitStopsTheSupervisor(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer cmd.Process.Kill()
	pidfile := filepath.Join(t.TempDir(), "daemon.pid")
	os.WriteFile(pidfile, []byte(fmt.Sprintf("%d\n", cmd.Process.Pid)), 0o644)
	var out bytes.Buffer
	// The test reaps the child itself; stopService polls until kill(pid, 0) fails.
	done := make(chan error, 1)
	go func() { done <- stopService(pidfile, 5*time.Second, &out) }()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the supervisor did not get SIGTERM")
	}
	if err := <-done; err != nil || !strings.Contains(out.String(), "stopped pid") {
		t.Fatalf("stopService: %v, %q", err, out.String())
	}
	if err := stopService(filepath.Join(t.TempDir(), "none.pid"), time.Second, &out); err == nil || !strings.Contains(err.Error(), "service redis_carp_proxy stop") {
		t.Fatalf("missing pid file: %v", err)
	}
	os.WriteFile(pidfile, []byte("x\n"), 0o644)
	if err := stopService(pidfile, time.Second, &out); err == nil || !strings.Contains(err.Error(), "holds no pid") {
		t.Fatalf("garbage pid file: %v", err)
	}
}

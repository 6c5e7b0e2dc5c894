package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testcluster"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds the daemon once per test run.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rcp-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "redis-carp-proxy")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestCheckConfigBinary(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.conf")
	os.WriteFile(good, []byte("cluster-seeds 127.0.0.1:7000\ndeny-commands KEYS FLUSHALL\nclient-output-buffer-limit 1mb 512kb 10s\n"), 0o644)
	out, err := exec.Command(bin, "check-config", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration OK") {
		t.Fatalf("good config: %v\n%s", err, out)
	}
	bad := filepath.Join(dir, "bad.conf")
	os.WriteFile(bad, []byte("# comment\ncluster-seeds 127.0.0.1:7000\nmaxclients lots\n"), 0o644)
	out, err = exec.Command(bin, "check-config", bad).CombinedOutput()
	if err == nil {
		t.Fatalf("bad config accepted:\n%s", out)
	}
	if want := bad + ":3: maxclients"; !strings.Contains(string(out), want) {
		t.Fatalf("bad config output %q does not name %q", out, want)
	}
	tlsBad := filepath.Join(dir, "tls.conf")
	os.WriteFile(tlsBad, []byte("cluster-seeds 127.0.0.1:7000\ntls-port 6380\n"), 0o644)
	if out, err = exec.Command(bin, "check-config", tlsBad).CombinedOutput(); err == nil || !strings.Contains(string(out), "tls-port needs tls-cert-file") {
		t.Fatalf("tls-port without a certificate: %v %s", err, out)
	}
}

type conn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (c *conn) do(cmd string) string {
	c.t.Helper()
	c.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.c.Write([]byte(cmd + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("%s: %v", cmd, err)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// TestSIGHUPReloadBinary runs the real daemon: SIGHUP applies a new deny-list and limits to
// an open connection, reports a changed listen address as needing a restart, keeps the
// running configuration when the file is broken, and SIGTERM stops it cleanly.
func TestSIGHUPReloadBinary(t *testing.T) {
	bin := binary(t)
	c := testcluster.New(t, testcluster.Options{Replicas: -1})
	dir := t.TempDir()
	conf := filepath.Join(dir, "proxy.conf")
	addr := freeAddr(t)
	base := fmt.Sprintf("listen %s\ncluster-seeds %s\nadmin-listen \"\"\n", addr, c.Seeds()[0])
	write := func(extra string) {
		if err := os.WriteFile(conf, []byte(base+extra), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("deny-commands KEYS\n")
	var logb testutil.SyncBuffer
	// reload-restart no: the change needing a restart is only reported (with yes a
	// successor takes over: TestSIGHUPRestartHandoverBinary).
	cmd := exec.Command(bin, "-c", conf, "--reload-restart", "no")
	cmd.Stdout, cmd.Stderr = &logb, &logb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("daemon log:\n%s", logb.String())
		}
	})
	var nc net.Conn
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if nc, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not listening: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	a := &conn{t: t, c: nc, br: bufio.NewReader(nc)}
	defer nc.Close()
	if got := a.do("SET hup 1"); got != "+OK" {
		t.Fatalf("SET: %q", got)
	}
	if got := a.do("KEYS hup"); !strings.Contains(got, "denied") {
		t.Fatalf("KEYS before reload: %q", got)
	}

	waitLog := func(what string, n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(logb.String(), what) < n {
			if time.Now().After(deadline) {
				t.Fatalf("log never showed %q (%d times)", what, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	other := freeAddr(t)
	os.WriteFile(conf, []byte(strings.Replace(base, addr, other, 1)+"deny-commands GET\nproto-max-bulk-len 2kb\nlog-level debug\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("configuration reloaded", 1)
	if l := logb.String(); !strings.Contains(l, `applied="proto-max-bulk-len deny-commands log-level"`) || !strings.Contains(l, "need a restart") || !strings.Contains(l, "keys=[listen]") {
		t.Fatalf("reload log does not list applied keys and listen as needing a restart:\n%s", l)
	}
	if got := a.do("KEYS hup"); got != "*1" {
		t.Fatalf("KEYS after reload: %q", got)
	}
	a.br.ReadString('\n')
	a.br.ReadString('\n')
	if got := a.do("GET hup"); !strings.Contains(got, "'get' is denied") {
		t.Fatalf("GET after reload on the open connection: %q", got)
	}

	// A broken file keeps the running configuration.
	os.WriteFile(conf, []byte(base+"deny-commands SET\nmaxclients lots\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("configuration reload failed", 1)
	if !strings.Contains(logb.String(), conf+":5: maxclients") {
		t.Fatalf("reload error does not name the line:\n%s", logb.String())
	}
	if got := a.do("GET hup"); !strings.Contains(got, "'get' is denied") {
		t.Fatalf("after a failed reload: %q", got)
	}
	if got := a.do("SET hup 2"); got != "+OK" {
		t.Fatalf("SET after a failed reload: %q", got)
	}
	// The reloaded bulk limit applies to the open connection.
	a.c.Write([]byte("*2\r\n$4\r\nECHO\r\n$3000\r\n"))
	if l, _ := a.br.ReadString('\n'); !strings.Contains(l, "invalid bulk length") {
		t.Fatalf("2kb bulk limit after reload: %q", l)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("daemon exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop after SIGTERM")
	}
}

// TestTLSListenerBinary: the daemon serves tls-port with the configured certificate and
// refuses clients without one when tls-auth-clients is on.
func TestTLSListenerBinary(t *testing.T) {
	bin := binary(t)
	c := testcluster.New(t, testcluster.Options{Replicas: -1})
	dir := t.TempDir()
	files, err := testcluster.WriteTLSFiles(dir, "proxy")
	if err != nil {
		t.Fatal(err)
	}
	addr, taddr := freeAddr(t), freeAddr(t)
	_, tport, _ := net.SplitHostPort(taddr)
	cmd := exec.Command(bin, "--listen", addr, "--cluster-seeds", c.Seeds()[0], "--admin-listen", "",
		"--tls-port", tport, "--tls-cert-file", files.CertFile, "--tls-key-file", files.KeyFile,
		"--tls-ca-cert-file", files.CACertFile, "--tls-auth-clients", "yes")
	var logb testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &logb, &logb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("daemon log:\n%s", logb.String())
		}
	})
	tc, err := files.Config()
	if err != nil {
		t.Fatal(err)
	}
	var got string
	deadline := time.Now().Add(20 * time.Second)
	for {
		nc, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", taddr, tc)
		if err == nil {
			a := &conn{t: t, c: nc, br: bufio.NewReader(nc)}
			got = a.do("SET tlsbin 1")
			nc.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TLS listener not serving: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != "+OK" {
		t.Fatalf("SET over TLS: %q", got)
	}
	noCert := tc.Clone()
	noCert.Certificates = nil
	if nc, err := tls.Dial("tcp", taddr, noCert); err == nil {
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = nc.Write([]byte("PING\r\n"))
		if err == nil {
			_, err = bufio.NewReader(nc).ReadString('\n')
		}
		nc.Close()
		if err == nil {
			t.Fatal("TLS client without a certificate was served")
		}
	}
}

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// restart and upgrade hand over in place (redis-carp-proxy(8), RESTART AND UPGRADE):
// the running proxy gets SIGUSR2 (expect a successor), its daemon(8) SIGTERM (it stops
// restarting its child and passes SIGTERM on: usr.sbin/daemon/daemon.c), and a new
// daemon(8) starts in the other pid-file slot (the old one keeps its pid files locked
// until it exits); the script then waits for the old proxy. A stub rc.subr records each
// step; the pid files are real.
func TestRCScriptRestartHandsOver(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, tc := range []struct {
		name    string
		running map[string]string // pid file (relative to the run dir) → pid
		want    string
	}{
		{"slot A running", map[string]string{"redis_carp_proxy.pid": "100", "redis_carp_proxy.child.pid": "101"},
			"install -d -o root -g wheel -m 0755 RUN\ninstall -d -o redis_carp_proxy -m 0700 /var/run/redis-carp-proxy\n" +
				"kill -USR2 101\nsleep 1\nkill -TERM 100\n" +
				"run_rc_command start pidfile=RUN/redis_carp_proxy.b.pid args=-r -P RUN/redis_carp_proxy.b.pid -p RUN/redis_carp_proxy.b.child.pid\n" +
				"wait_for_pids 101\n"},
		{"slot B running", map[string]string{"redis_carp_proxy.b.pid": "200", "redis_carp_proxy.b.child.pid": "201"},
			"install -d -o root -g wheel -m 0755 RUN\ninstall -d -o redis_carp_proxy -m 0700 /var/run/redis-carp-proxy\n" +
				"kill -USR2 201\nsleep 1\nkill -TERM 200\n" +
				"run_rc_command start pidfile=RUN/redis_carp_proxy.pid args=-r -P RUN/redis_carp_proxy.pid -p RUN/redis_carp_proxy.child.pid\n" +
				"wait_for_pids 201\n"},
		{"not running", nil,
			"run_rc_command start pidfile=RUN/redis_carp_proxy.pid args=-r -P RUN/redis_carp_proxy.pid -p RUN/redis_carp_proxy.child.pid\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			run := filepath.Join(dir, "run")
			prefix := filepath.Join(dir, "usr", "local")
			log := filepath.Join(dir, "log")
			os.MkdirAll(run, 0o755)
			os.MkdirAll(filepath.Join(prefix, "sbin"), 0o755)
			os.WriteFile(filepath.Join(prefix, "sbin", "redis-carp-proxy"), []byte("#!/bin/sh\nexit 0\n"), 0o755)
			for f, pid := range tc.running {
				os.WriteFile(filepath.Join(run, f), []byte(pid+"\n"), 0o644)
			}
			// check_pidfile as rc.subr's, less the process name check: the pid in the file.
			stub := `load_rc_config() { :; }
check_pidfile() { [ -f "$1" ] && cat "$1"; }
install() { echo "install $*" >> "` + log + `"; }
kill() { echo "kill $*" >> "` + log + `"; }
sleep() { echo "sleep $*" >> "` + log + `"; }
wait_for_pids() { echo "wait_for_pids $*" >> "` + log + `"; }
id() { return 0; }
run_rc_command() {
	case "$1" in
	start) set -- ${command_args}; echo "run_rc_command start pidfile=${pidfile} args=$1 $2 $3 $4 $5" >> "` + log + `" ;;
	*) eval "\${$1_cmd}" ;;
	esac
}
`
			subr := filepath.Join(dir, "rc.subr")
			os.WriteFile(subr, []byte(stub), 0o644)
			src, err := os.ReadFile(filepath.Join(repo, rcScript))
			if err != nil {
				t.Fatal(err)
			}
			script := strings.ReplaceAll(string(src), "%%PREFIX%%", prefix)
			script = strings.Replace(script, ". /etc/rc.subr\n", ". "+subr+"\n", 1)
			script = strings.Replace(script, `rundir="/var/run/${name}"`, `rundir="`+run+`"`, 1)
			path := filepath.Join(dir, "redis_carp_proxy")
			os.WriteFile(path, []byte(script), 0o755)
			for _, verb := range []string{"restart", "upgrade"} {
				os.Remove(log)
				out, err := exec.Command(sh, path, verb).CombinedOutput()
				if err != nil {
					t.Fatalf("%s: %v\n%s", verb, err, out)
				}
				got, _ := os.ReadFile(log)
				if want := strings.ReplaceAll(tc.want, "RUN", run); string(got) != want {
					t.Errorf("%s ran:\n%s\nwant:\n%s\noutput:\n%s", verb, got, want, out)
				}
			}
		})
	}
}

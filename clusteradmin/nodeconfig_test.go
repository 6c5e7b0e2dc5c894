package clusteradmin

import (
	"strings"
	"testing"
)

func TestConfigProblem(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    nodeConfig
		want []string // substrings; none: no problem
	}{
		{"redis init's config", nodeConfig{protectedMode: "no", bind: []string{"198.51.100.11"}, bindSourceAddr: "198.51.100.11", defaultNoPass: true}, nil},
		{"loopback test cluster", nodeConfig{protectedMode: "yes", bind: []string{"127.0.0.1", "-::1"}, defaultNoPass: true}, nil},
		{"protected mode on the LAN", nodeConfig{protectedMode: "yes", bind: []string{"198.51.100.11"}, bindSourceAddr: "198.51.100.11", defaultNoPass: true},
			[]string{"protected-mode yes", "DENIED", "protected-mode no"}},
		{"protected mode with a password is fine", nodeConfig{protectedMode: "yes", bind: []string{"198.51.100.11"}, bindSourceAddr: "198.51.100.11"}, nil},
		{"no bind-source-addr", nodeConfig{protectedMode: "no", bind: []string{"198.51.100.11", "127.0.0.1"}, defaultNoPass: true},
			[]string{"bind 198.51.100.11 without bind-source-addr", "set bind-source-addr 198.51.100.11"}},
		{"both", nodeConfig{protectedMode: "yes", bind: []string{"198.51.100.11"}, defaultNoPass: true},
			[]string{"protected-mode yes", "bind-source-addr"}},
		{"any address: protected mode still refuses", nodeConfig{protectedMode: "yes", bind: []string{"*", "-::*"}, defaultNoPass: true},
			[]string{"protected-mode yes"}},
	} {
		got := configProblem(tc.c)
		if (got == "") != (tc.want == nil) {
			t.Errorf("%s: %q", tc.name, got)
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", tc.name, got, w)
			}
		}
	}
}

// CONFIG GET and ACL GETUSER as Redis 7.2 answers them (go-redis maps CONFIG GET to
// name → value).
func TestParseConfigGet(t *testing.T) {
	c := parseConfigGet(map[string]string{"protected-mode": "yes", "bind": "198.51.100.11 -::1", "bind-source-addr": "", "requirepass": ""},
		[]string{"on", "nopass", "sanitize-payload"})
	if c.protectedMode != "yes" || len(c.bind) != 2 || c.bind[1] != "-::1" || !c.defaultNoPass || c.bindSourceAddr != "" {
		t.Fatalf("%+v", c)
	}
}

// INFO replication of a replica whose master refuses it (recorded from Redis 7.2 with
// the master in protected mode).
const replDown = "# Replication\r\nrole:slave\r\nmaster_host:198.51.100.12\r\nmaster_port:7000\r\n" +
	"master_link_status:down\r\nmaster_last_io_seconds_ago:-1\r\nmaster_sync_in_progress:0\r\n" +
	"slave_read_repl_offset:0\r\nslave_repl_offset:0\r\nmaster_link_down_since_seconds:12\r\n"

func TestReplicationStatusNamesTheCause(t *testing.T) {
	got := replicationStatus(replDown, "protected-mode yes without a password")
	for _, w := range []string{"198.51.100.12:7000", "down for 12s", "the master has protected-mode yes"} {
		if !strings.Contains(got, w) {
			t.Errorf("%q lacks %q", got, w)
		}
	}
}

func TestStrangers(t *testing.T) {
	nodes := "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 198.51.100.11:7000@17000 myself,master - 0 0 1 connected 0-5460\n" +
		"67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 198.51.100.100:7000@17000 handshake - 0 0 0 connected\n" +
		"292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 198.51.100.12:7000@17000 master - 0 0 2 connected 5461-10922\n"
	lines, err := parseNodes(nodes)
	if err != nil {
		t.Fatal(err)
	}
	addrs := []string{"198.51.100.11:7000", "198.51.100.12:7000", "198.51.100.13:7000"}
	if got := strangers(lines, addrs); len(got) != 1 || got[0] != "198.51.100.100:7000" {
		t.Fatalf("strangers = %v", got)
	}
	if got := strangers(lines, []string{"redis-a:7000"}); got != nil {
		t.Fatalf("host names: %v", got)
	}
	if !strings.Contains(deniedHint(errString("DENIED Redis is running in protected mode because protected mode is enabled")), "protected-mode no") {
		t.Fatal("no hint for DENIED")
	}
}

type errString string

func (e errString) Error() string { return string(e) }

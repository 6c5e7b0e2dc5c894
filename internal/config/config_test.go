package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
)

const sampleHeader = `# redis-carp-proxy configuration (redis.conf style: "key value" lines; a line whose
# first character is "#" is a comment, a "#" after a value is part of the value).
# Every key can also be given on the command line as --key value; flags win.
# Lines starting with "# key" show the default; uncomment to change.
# redis-carp-proxy.conf(5) describes every key.
#
# Active-active (each host CARP MASTER of its own VIP; docs/carp.md "Active-active"): instead of
# listen VIP:PORT and vip, write (carp-host-index 2 on the second host, 3 on the third)
#   listen :6379
#   vips 198.51.100.101@1,198.51.100.102@2,198.51.100.103@3
#   carp-host-index 1
#   carp-pass-file /usr/local/etc/redis-carp-proxy/carp.pass
`

// sampleActive are the keys set in the shipped sample (the rest show their default).
var sampleActive = map[string]string{
	"listen":        "198.51.100.100:6379",
	"cluster-seeds": "198.51.100.1:7000,198.51.100.2:7000,198.51.100.3:7000",
	"admin-listen":  "127.0.0.1:9479",
	"carp-mode":     "freebsd",
	"vip":           "198.51.100.100",
}

func renderSample() string {
	var b strings.Builder
	b.WriteString(sampleHeader)
	for _, k := range keys {
		b.WriteString("\n# " + k.doc + "\n")
		def := k.defValue()
		if def == "" {
			def = `""`
		}
		if v, ok := sampleActive[k.name]; ok {
			b.WriteString("# default: " + k.name + " " + def + "\n")
			b.WriteString(k.name + " " + v + "\n")
		} else {
			b.WriteString("# " + k.name + " " + def + "\n")
		}
	}
	return b.String()
}

func TestSampleDocumentsEveryKey(t *testing.T) {
	path := filepath.Join("..", "..", "etc", "redis-carp-proxy.conf.sample")
	// The sample is rendered from the key table (go test ./internal/config -update).
	testutil.Golden(t, path, renderSample())
	c, err := LoadFile(path)
	if err != nil {
		t.Fatalf("sample does not load: %v", err)
	}
	if c.CarpMode != "freebsd" || len(c.ClusterSeeds) != 3 {
		t.Fatalf("sample values not applied: %+v", c)
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"listen 127.0.0.1:1\nbogus 1\n", "test.conf:2: unknown key \"bogus\""},
		{"# c\n\nmaxclients lots\n", "test.conf:3: maxclients: want an integer"},
		{"maxclients 0\n", "test.conf:1: maxclients: 0 out of range"},
		{"backend-read-timeout 3\n", "test.conf:1: backend-read-timeout: want a duration"},
		{"log-level loud\n", "test.conf:1: log-level: want one of"},
		{"listen nocolon\n", "test.conf:1: listen: want host:port"},
		{"maxclients 5\nmaxclients 6\n", "test.conf:2: maxclients already set on line 1"},
		{"proto-max-bulk-len 12x\n", "test.conf:1: proto-max-bulk-len: want a size"},
		{"redis-ports 9:1\n", "test.conf:1: redis-ports: want a port"},
		{"admin-pprof maybe\n", "test.conf:1: admin-pprof: want yes or no"},
	} {
		c := Default()
		err := c.Parse(strings.NewReader(tc.in), "test.conf")
		var le *LineError
		if err == nil || !errors.As(err, &le) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestFlagsOverrideFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "p.conf")
	os.WriteFile(f, []byte("listen 127.0.0.1:7777\ncluster-seeds 127.0.0.1:7000\nbackend-read-timeout 2s\n"), 0o644)
	fs := NewFlagSet("t")
	if err := fs.Parse([]string{"-c", f, "--listen", "127.0.0.1:8888", "--proto-max-bulk-len", "1mb"}); err != nil {
		t.Fatal(err)
	}
	c, err := fs.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8888" || c.BackendReadTimeout != 2*time.Second || c.ProtoMaxBulkLen != 1<<20 {
		t.Fatalf("got listen=%s timeout=%v bulk=%d", c.Listen, c.BackendReadTimeout, c.ProtoMaxBulkLen)
	}
	fs = NewFlagSet("t")
	fs.SetOutput(&strings.Builder{})
	if err := fs.Parse([]string{"--maxclients", "x"}); err == nil {
		t.Fatal("bad flag value accepted")
	}
	fs = NewFlagSet("t")
	fs.Parse([]string{"--listen", "127.0.0.1:1"})
	if _, err := fs.Load(); err == nil || !strings.Contains(err.Error(), "cluster-seeds") {
		t.Fatalf("missing seeds not reported: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512mb": 512 << 20, "1k": 1000, "1kb": 1024, "7": 7, "2GB": 2 << 30} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestEveryKeyHasAField(t *testing.T) {
	c := Default()
	for _, k := range keys {
		if _, ok := field(c, k.name); !ok {
			t.Errorf("key %s: no Config field (add it to fieldOverrides in diff.go)", k.name)
		}
	}
	if d := Diff(Default(), Default()); len(d) != 0 {
		t.Errorf("Diff of two defaults: %v", d)
	}
}

func TestDiffAndCopyKey(t *testing.T) {
	a := Default()
	b := Default()
	for _, kv := range [][2]string{{"maxclients", "7"}, {"deny-commands", "KEYS flushall"}, {"client-output-buffer-limit", "1mb 0 0"}, {"listen", "127.0.0.1:1"}} {
		if err := lookup(kv[0]).set(b, kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	got := strings.Join(Diff(a, b), " ")
	if want := "listen maxclients client-output-buffer-limit deny-commands"; got != want {
		t.Fatalf("Diff = %q, want %q", got, want)
	}
	if err := CopyKey(a, b, "deny-commands"); err != nil {
		t.Fatal(err)
	}
	if strings.Join(a.DenyCommands, ",") != "keys,flushall" || a.MaxClients == 7 {
		t.Fatalf("CopyKey copied wrong: %+v %d", a.DenyCommands, a.MaxClients)
	}
	if b.OutputLimit != (OutputLimit{Hard: 1 << 20}) {
		t.Fatalf("output limit parsed as %+v", b.OutputLimit)
	}
	for _, bad := range []string{"1mb", "1mb 2mb 1s", "x 0 0", "1mb 0 -1s"} {
		if err := lookup("client-output-buffer-limit").set(Default(), bad); err == nil {
			t.Errorf("client-output-buffer-limit %q accepted", bad)
		}
	}
}

// File defaults follow Prefix, so a build for another PREFIX (the port's -X) finds its
// files there.
func TestDefaultsFollowPrefix(t *testing.T) {
	old := Prefix
	t.Cleanup(func() { Prefix = old })
	Prefix = "/opt/local"
	c := Default()
	if c.PFAllowFile != "/opt/local/etc/redis-carp-proxy/allow.list" || c.PFAnchorFile != "/opt/local/etc/redis-carp-proxy/pf.anchor" {
		t.Fatalf("defaults under %s: %q, %q", Prefix, c.PFAllowFile, c.PFAnchorFile)
	}
	if DefaultFile() != "/opt/local/etc/redis-carp-proxy.conf" {
		t.Fatalf("DefaultFile = %q", DefaultFile())
	}
	if def, _, _ := Describe("pf-allow-file"); def != c.PFAllowFile {
		t.Fatalf("Describe: %q", def)
	}
}

func TestVIPsKeys(t *testing.T) {
	load := func(in string) (*Config, error) {
		c := Default()
		if err := c.Parse(strings.NewReader("cluster-seeds 127.0.0.1:7000\n"+in), "test.conf"); err != nil {
			return nil, err
		}
		return c, c.Validate()
	}
	c, err := load("listen :6379\ncarp-mode freebsd\ncarp-interface vtnet0\nvips 198.51.100.101@1, 198.51.100.102@2 198.51.100.103@3\ncarp-host-index 2\n")
	if err != nil {
		t.Fatal(err)
	}
	eps := c.Endpoints()
	if len(eps) != 3 || eps[1] != (Endpoint{VIP: "198.51.100.102", VHID: 2, Listen: "198.51.100.102:6379"}) {
		t.Fatalf("Endpoints = %+v", eps)
	}
	// Host 2 is preferred for the second VIP, next for the first, last for the third.
	if a := []int{c.Advskew(0), c.Advskew(1), c.Advskew(2)}; a[0] != 100 || a[1] != 0 || a[2] != 200 {
		t.Fatalf("advskew of host 2 = %v, want [100 0 200]", a)
	}
	// Every VIP has exactly one preferred host, and the ranks are a rotation.
	for vip := 0; vip < 3; vip++ {
		seen := map[int]bool{}
		for h := 1; h <= 3; h++ {
			c.CarpHostIndex = h
			seen[c.Advskew(vip)] = true
		}
		if len(seen) != 3 || !seen[0] || !seen[100] || !seen[200] {
			t.Fatalf("VIP %d advskews over the hosts: %v", vip, seen)
		}
	}
	// Five hosts: the automatic step keeps the rotation within 240.
	c, err = load("listen :6379\nvips 198.51.100.101@1\ncarp-hosts 5\ncarp-host-index 5\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.AdvskewStep() != 60 || c.Advskew(0) != 240 {
		t.Fatalf("5 hosts: step %d, advskew of host 5 for VIP 1 %d", c.AdvskewStep(), c.Advskew(0))
	}

	// Single-VIP configurations are unchanged: one endpoint on listen.
	c, err = load("listen 198.51.100.100:6379\nvip 198.51.100.100\ncarp-vhid 7\n")
	if err != nil {
		t.Fatal(err)
	}
	if eps := c.Endpoints(); len(eps) != 1 || eps[0] != (Endpoint{VIP: "198.51.100.100", VHID: 7, Listen: "198.51.100.100:6379"}) {
		t.Fatalf("single VIP Endpoints = %+v", eps)
	}
	if c, _ := load("listen 127.0.0.1:6379\n"); c.Endpoints()[0].VIP != "127.0.0.1" {
		t.Fatalf("static default endpoint = %+v", c.Endpoints())
	}

	for _, tc := range []struct{ in, want string }{
		{"vips 198.51.100.101@1,198.51.100.101@2\n", "198.51.100.101 is listed twice"},
		{"vips 198.51.100.101@1,198.51.100.102@1\n", "vhid 1 is given to both 198.51.100.101 and 198.51.100.102"},
		{"vips 198.51.100.101@1\nvip 198.51.100.101\n", "vips and vip are exclusive"},
		{"vips 198.51.100.101\ncarp-vhid 3\n", "vips and carp-vhid are exclusive"},
		{"listen :0\nvips 198.51.100.101@1\n", "must be 1 to 65535"},
		{"listen 127.0.0.1:6379\nvips 198.51.100.101@1\n", "its host, if any, must be one of the vips"},
		{"listen :6379\nvips 198.51.100.101@1\ntls-port 6379\n", "tls-port 6379 is listen's port"},
		{"listen :6379\nvips 198.51.100.101@1\nadmin-listen 198.51.100.101:9479\n", "admin-listen \"198.51.100.101:9479\" is on a VIP"},
		{"listen :6379\nvips 198.51.100.101@1,198.51.100.102@2\ncarp-host-index 3\n", "carp-host-index 3 is beyond the 2 hosts"},
		{"listen :6379\nvips 198.51.100.101@1\ncarp-hosts 4\ncarp-advskew-step 100\n", "use at most 80"},
		{"vips 198.51.100.101@0\n", "vhid of 198.51.100.101: want 1 to 255"},
		{"vips 198.51.100.101@x\n", "vhid of 198.51.100.101"},
		{"vips fe80::1%em0\n", "not an IP address"},
		{"vips nope\n", "not an IP address"},
	} {
		if _, err := load(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want it to contain %q", tc.in, err, tc.want)
		}
	}
	// Listening on the wildcard or on one of the VIPs gives the port too.
	for _, l := range []string{"0.0.0.0:6379", "[::]:6379", "198.51.100.102:6379"} {
		if _, err := load("listen " + l + "\nvips 198.51.100.101@1,198.51.100.102@2\n"); err != nil {
			t.Errorf("listen %s with vips: %v", l, err)
		}
	}
}

// TestSetUsesTheFileBounds (issue 28, finding 8): Set refuses what the file refuses, and
// sizes that overflow int64 are an error, not a wrapped value.
func TestSetUsesTheFileBounds(t *testing.T) {
	c := Default()
	for _, tc := range []struct{ key, v string }{
		{"slowlog-max-len", "100001"}, {"slowlog-max-len", "9223372036854775807"}, {"maxclients", "0"},
		{"proto-max-bulk-len", "9223372036854775807"}, {"client-query-buffer-limit", "2tb"},
		{"proto-max-bulk-len", "9007199254740993gb"}, {"no-such-key", "1"},
	} {
		if err := c.Set(tc.key, tc.v); err == nil {
			t.Errorf("Set(%s, %s) accepted", tc.key, tc.v)
		}
	}
	if err := c.Set("slowlog-max-len", "100000"); err != nil || c.SlowlogMaxLen != 100000 {
		t.Fatalf("Set within bounds: %v, %d", err, c.SlowlogMaxLen)
	}
	if _, err := ParseSize("9007199254740993gb"); err == nil {
		t.Fatal("ParseSize accepted an overflowing size")
	}
}

// carp-peers: unicast CARP sends to one peer per address family (sbin/ifconfig/ifcarp.c
// keeps one carpr_addr and one carpr_addr6 per vhid), so it serves two hosts.
func TestCarpPeersKey(t *testing.T) {
	load := func(s string) (*Config, error) {
		c := Default()
		if err := c.Parse(strings.NewReader("cluster-seeds 127.0.0.1:7000\n"+s), "t.conf"); err != nil {
			return nil, err
		}
		return c, c.Validate()
	}
	c, err := load("listen :6379\nvips 198.51.100.101@1,2001:db8::101@2\ncarp-hosts 2\ncarp-peers 198.51.100.12, 2001:db8::12\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.CarpPeers) != 2 || c.CarpPeers[0] != "198.51.100.12" || c.CarpPeers[1] != "2001:db8::12" {
		t.Fatalf("CarpPeers = %q", c.CarpPeers)
	}
	for _, tc := range []struct{ in, want string }{
		{"carp-peers 198.51.100.12,198.51.100.13\n", "one peer per address family"},
		{"carp-peers 224.0.0.18\n", "not a unicast IP address"},
		{"carp-peers fe80::1%em0\n", "not a unicast IP address"},
		{"carp-peers host-b\n", "not a unicast IP address"},
		{"listen :6379\nvips 198.51.100.101@1,198.51.100.102@2,198.51.100.103@3\ncarp-peers 198.51.100.12\n", "serves two hosts; the rotation has 3"},
		{"vip 198.51.100.101\ncarp-hosts 3\ncarp-peers 198.51.100.12\n", "the rotation has 3"},
	} {
		if _, err := load(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want it to contain %q", tc.in, err, tc.want)
		}
	}
}

// TestUsersErrorHidesPassword (issue 28, finding 16): a malformed users entry is named by
// its place and user, never printed (it holds the password).
func TestUsersErrorHidesPassword(t *testing.T) {
	for _, v := range []string{"app:Pa55word:bogus", "Pa55word", "app::readonly", "app:Pa55word:readonly:x"} {
		c := Default()
		err := c.Parse(strings.NewReader("users 'ok:okpw "+v+"'\n"), "test.conf")
		if err == nil {
			t.Fatalf("users %q accepted", v)
		}
		if strings.Contains(err.Error(), "Pa55word") || strings.Contains(err.Error(), "okpw") {
			t.Errorf("users %q: the error shows a password: %v", v, err)
		}
		if !strings.Contains(err.Error(), "entry 2") {
			t.Errorf("users %q: the error does not name the entry: %v", v, err)
		}
	}
	c := Default()
	if err := c.Parse(strings.NewReader("users 'a:apw:admin r:rpw:readonly w:wpw'\n"), "test.conf"); err != nil {
		t.Fatal(err)
	}
	if !c.Users[0].Admin || c.Users[0].ReadOnly || !c.Users[1].ReadOnly || c.Users[1].Admin || c.Users[2].Admin || c.Users[2].ReadOnly {
		t.Fatalf("users: %+v", c.Users)
	}
}

// TestAdminListenRefusesWildcardAndVIP (issue 28, finding 13): admin-listen on every
// address or on the vip is refused unless admin-listen-public is set.
func TestAdminListenRefusesWildcardAndVIP(t *testing.T) {
	base := "cluster-seeds 127.0.0.1:7000\nvip 198.51.100.100\nlisten 198.51.100.100:6379\n"
	for _, tc := range []struct {
		admin string
		ok    bool
	}{
		{"0.0.0.0:9479", false}, {":9479", false}, {"[::]:9479", false}, {"198.51.100.100:9479", false},
		{"127.0.0.1:9479", true}, {"198.51.100.1:9479", true}, {`""`, true},
	} {
		for _, public := range []bool{false, true} {
			text := base + "admin-listen " + tc.admin + "\n"
			if public {
				text += "admin-listen-public yes\n"
			}
			c := Default()
			if err := c.Parse(strings.NewReader(text), "t.conf"); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if want := tc.ok || public; (err == nil) != want {
				t.Errorf("admin-listen %s (public %v): %v", tc.admin, public, err)
			}
		}
	}
}

// handover-peers, handover-on-stop and handover-timeout: the planned handover's keys.
func TestHandoverKeys(t *testing.T) {
	load := func(s string) (*Config, error) {
		c := Default()
		if err := c.Parse(strings.NewReader("cluster-seeds 127.0.0.1:7000\n"+s), "t.conf"); err != nil {
			return nil, err
		}
		return c, c.Validate()
	}
	c, err := load("handover-peers 198.51.100.2:9479, [2001:db8::2]:9479\nhandover-on-stop no\nhandover-timeout 45s\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.HandoverPeers) != 2 || c.HandoverPeers[0] != "198.51.100.2:9479" || c.HandoverPeers[1] != "[2001:db8::2]:9479" {
		t.Fatalf("HandoverPeers = %q", c.HandoverPeers)
	}
	if c.HandoverOnStop || c.HandoverTimeout != 45*time.Second {
		t.Fatalf("on-stop %v, timeout %v", c.HandoverOnStop, c.HandoverTimeout)
	}
	d := Default()
	if !d.HandoverOnStop || d.HandoverTimeout != 30*time.Second || d.HandoverPeers != nil {
		t.Fatalf("defaults: on-stop %v, timeout %v, peers %q", d.HandoverOnStop, d.HandoverTimeout, d.HandoverPeers)
	}
	for _, bad := range []string{"handover-peers 198.51.100.2\n", "handover-peers host:port\n", "handover-timeout 10ms\n", "handover-on-stop maybe\n"} {
		if _, err := load(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

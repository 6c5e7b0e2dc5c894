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

const sampleHeader = `# redis-carp-proxy configuration (redis.conf style: "key value", "#" comments).
# Every key can also be given on the command line as --key value; flags win.
# Lines starting with "# key" show the default; uncomment to change.
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

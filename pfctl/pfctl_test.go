package pfctl

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun/cmdruntest"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
)

// goldenConfigs maps a golden file to the configuration it is rendered from.
var goldenConfigs = map[string]string{
	"sample.anchor":       "../etc/redis-carp-proxy.conf.sample",
	"full.anchor":         "testdata/configs/full.conf",
	"custom-ports.anchor": "testdata/configs/custom-ports.conf",
	"ipv6.anchor":         "testdata/configs/ipv6.conf",
	"vips.anchor":         "testdata/configs/vips.conf",
}

func loadParams(t *testing.T, path string) Params {
	t.Helper()
	c, err := config.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := FromConfig(c, filepath.Base(path))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRenderGolden(t *testing.T) {
	for golden, conf := range goldenConfigs {
		t.Run(golden, func(t *testing.T) {
			got, err := Render(loadParams(t, conf))
			if err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, filepath.Join("testdata", golden), got)
			checkGrammar(t, got)
			if strings.Contains(got, "rdr") {
				t.Fatal("the anchor must not redirect")
			}
		})
	}
}

// The shipped anchor sample (installed as share/examples/redis-carp-proxy/pf.anchor) is the
// rendering of the shipped configuration sample.
func TestShippedAnchorSample(t *testing.T) {
	const shipped = "../etc/redis-carp-proxy.pf.anchor.sample"
	rendered, err := Render(loadParams(t, "../etc/redis-carp-proxy.conf.sample"))
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, shipped, rendered)
}

// checkGrammar parses every non-comment line with the subset of pfctl's parse.y
// (sbin/pfctl/parse.y, FreeBSD 13-15) that the renderer uses:
//
//	tabledef: table '<' NAME '>' persist file "PATH"
//	pfrule:   action dir logquick interface proto fromto filter_opts
//
// with the keyword order the grammar requires: "pass|block [in|out] [log] [quick]
// [on IF] [proto P] [from HOST] [to HOST [port PORTSPEC]] [keep state [(no-sync)]]".
func checkGrammar(t *testing.T, rules string) {
	t.Helper()
	host := `(any|<[A-Za-z0-9_]+>|[0-9A-Fa-f.:]+(/[0-9]+)?|\{ [0-9A-Fa-f.:/ ]+ \})`
	port := `([0-9]+(:[0-9]+)?|\{ [0-9: ]+ \})`
	ruleRe := regexp.MustCompile(`^(pass|block)( in| out)?( log)?( quick)?( on [a-z][a-z0-9_.]*)?( proto (tcp|carp|pfsync))?` +
		`( from ` + host + `)?( to ` + host + `( port ` + port + `)?| to port ` + port + `)?` +
		`( keep state( \((no-sync|max-src-conn [0-9]+(, max-src-conn-rate [0-9]+/[0-9]+)?|max-src-conn-rate [0-9]+/[0-9]+)\))?)?$`)
	tableRe := regexp.MustCompile(`^table <[A-Za-z_][A-Za-z0-9_]*> persist file "/[^"]+"$`)
	tables := 0
	for i, line := range strings.Split(rules, "\n") {
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case tableRe.MatchString(line):
			tables++
		case ruleRe.MatchString(line):
			if strings.HasPrefix(line, "block") && strings.Contains(line, "keep state") {
				t.Errorf("line %d: block rules keep no state: %q", i+1, line)
			}
			if strings.Contains(line, " port ") && !strings.Contains(line, "proto tcp") {
				t.Errorf("line %d: port needs proto tcp: %q", i+1, line)
			}
		default:
			t.Errorf("line %d is not in the pf.conf grammar subset: %q", i+1, line)
		}
	}
	if tables != 1 {
		t.Errorf("want exactly one table definition, got %d", tables)
	}
}

func TestRenderRules(t *testing.T) {
	p := loadParams(t, "testdata/configs/full.conf")
	got, _ := Render(p)
	for _, want := range []string{
		`table <redis_allow> persist file "/usr/local/etc/redis-carp-proxy/allow.list"`,
		"pass quick on vtnet0 proto carp keep state (no-sync)",
		"pass quick on vtnet2 proto pfsync keep state (no-sync)",
		"pass in quick proto tcp from { 198.51.100.0/26 198.51.100.200 } to 198.51.100.100 port 6379 keep state",
		"block in log quick proto tcp to 198.51.100.100 port 6379",
		"pass in quick on lo0 proto tcp to port { 7000:7100 17000:17100 9479 } keep state",
		"pass in quick on vtnet1 proto tcp from <redis_allow> to port { 7000:7100 17000:17100 9479 } keep state",
		"block in log quick proto tcp to port { 7000:7100 17000:17100 9479 }",
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("missing rule %q in\n%s", want, got)
		}
	}
	// The pass from the allowlist must come before the block (both are quick).
	if strings.Index(got, "from <redis_allow>") > strings.Index(got, "block in log quick proto tcp to port {") {
		t.Error("block precedes the allowlist pass")
	}
}

func TestPorts(t *testing.T) {
	for _, tc := range []struct {
		lo, hi, admin int
		want          string
	}{
		{7000, 7100, 9479, "7000:7100 17000:17100 9479"},
		{7000, 7100, 7050, "7000:7100 17000:17100"},
		{6379, 6379, 16379, "6379 16379"},
		{60000, 60010, 0, "60000:60010"},
		{7000, 7001, 0, "7000:7001 17000:17001"},
	} {
		got := strings.Join(Params{PortLo: tc.lo, PortHi: tc.hi, AdminPort: tc.admin}.Ports(), " ")
		if got != tc.want {
			t.Errorf("%d:%d admin %d: got %q, want %q", tc.lo, tc.hi, tc.admin, got, tc.want)
		}
	}
}

func TestValidateRejectsUnsafeNames(t *testing.T) {
	base := loadParams(t, "testdata/configs/full.conf")
	for _, tc := range []struct {
		name string
		mut  func(*Params)
		want error
	}{
		{"anchor underscore", func(p *Params) { p.Anchor = "_x" }, ErrBadName},
		{"anchor space", func(p *Params) { p.Anchor = "a b" }, ErrBadName},
		{"table long", func(p *Params) { p.Table = strings.Repeat("t", 32) }, ErrBadName},
		{"table dash", func(p *Params) { p.Table = "a-b" }, ErrBadName},
		{"interface injection", func(p *Params) { p.InternalIf = "em0 proto udp" }, ErrBadName},
		{"interface too long", func(p *Params) { p.SyncIf = "abcdefghijklmnop" }, ErrBadName},
		{"file quote", func(p *Params) { p.AllowFile = `/tmp/a"b` }, ErrBadPath},
		{"file relative", func(p *Params) { p.AllowFile = "allow.list" }, ErrBadPath},
		{"anchor file quote", func(p *Params) { p.AnchorFile = `/tmp/a"b` }, ErrBadPath},
		{"anchor file relative", func(p *Params) { p.AnchorFile = "pf.anchor" }, ErrBadPath},
		{"ports", func(p *Params) { p.PortLo, p.PortHi = 10, 5 }, ErrBadPorts},
		{"lb family", func(p *Params) { p.LBNetworks = []netip.Prefix{netip.MustParsePrefix("2001:db8::/64")} }, ErrBadAddress},
	} {
		p := base
		tc.mut(&p)
		if _, err := Render(p); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestParseEntry(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.7":        "198.51.100.7",
		" 198.51.100.0/24 ":   "198.51.100.0/24",
		"2001:db8::1":         "2001:db8::1",
		"2001:DB8::/32":       "2001:db8::/32",
		"::ffff:198.51.100.9": "198.51.100.9",
		"198.51.100.7/32":     "198.51.100.7",
	} {
		p, err := ParseEntry(in)
		if err != nil || FormatEntry(p) != want {
			t.Errorf("ParseEntry(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "host.example", "198.51.100.7/24", "198.51.100.0/33", "fe80::1%em0", "198.51.100", "1.2.3.4-1.2.3.9", "!198.51.100.1"} {
		if _, err := ParseEntry(in); !errors.Is(err, ErrBadAddress) {
			t.Errorf("ParseEntry(%q): got %v, want ErrBadAddress", in, err)
		}
	}
	if _, err := ParseEntry("198.51.100.7/24"); err == nil || !strings.Contains(err.Error(), "did you mean 198.51.100.0/24") {
		t.Errorf("host bits error should suggest the network: %v", err)
	}
}

func TestApplyRunsPfctl(t *testing.T) {
	p := loadParams(t, "testdata/configs/custom-ports.conf")
	p.AnchorFile = filepath.Join(t.TempDir(), "pf.anchor")
	rec := cmdruntest.New(nil)
	pf := &PF{Runner: rec, Anchor: p.Anchor, Table: p.Table}
	if err := pf.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	// The file pf.conf loads at boot holds what was loaded now.
	rules, _ := Render(p)
	if b, err := os.ReadFile(p.AnchorFile); err != nil || string(b) != rules {
		t.Fatalf("anchor file: %v\n%s", err, b)
	}
	want := `$ /sbin/pfctl -a rcp-test -f -
> # pf anchor "rcp-test" for redis-carp-proxy, generated by ` + "`redis-carp-proxy pf render`" + `
> # from custom-ports.conf. Do not edit: change the configuration and run ` + "`redis-carp-proxy pf apply`." + `
> # /etc/pf.conf hooks it in with: anchor "rcp-test"
>
> # Sources allowed to reach 6379 (Redis), 16379 (cluster bus):
> # one address or CIDR a line, edited with ` + "`redis-carp-proxy allow add|del`." + `
> table <rcp_allow> persist file "/var/db/rcp/allow.list"
>
> # CARP advertisements for the VIP.
> pass quick proto carp keep state (no-sync)
>
> # Clients: anyone may reach the proxy on the VIP (pf-lb-network is empty).
> pass in quick proto tcp to any port 6380 keep state
>
> # This host's own proxy and tools reach the local Redis over lo0.
> pass in quick on lo0 proto tcp to port { 6379 16379 } keep state
>
> # Redis, cluster bus and admin ports: allowlisted sources only.
> pass in quick proto tcp from <rcp_allow> to port { 6379 16379 } keep state
> block in quick proto tcp to port { 6379 16379 }
$ /sbin/pfctl -a rcp-test -t rcp_allow -T replace -f /var/db/rcp/allow.list
`
	if got := rec.Log(); got != want {
		t.Fatalf("commands:\n%s\nwant:\n%s", got, want)
	}
}

func TestPfctlErrorsCarryStderr(t *testing.T) {
	rec := cmdruntest.New(map[string]cmdruntest.Reply{
		"/sbin/pfctl -a redis-carp-proxy -f -":                   {Exit: 1, Stderr: "stdin:9: syntax error\npfctl: Syntax error in config file: pf rules not loaded\n"},
		"/sbin/pfctl -a redis-carp-proxy -t redis_allow -T show": {Exit: 1, Stderr: "pfctl: Table does not exist.\n"},
	})
	pf := &PF{Runner: rec, Anchor: "redis-carp-proxy", Table: "redis_allow"}
	err := pf.LoadAnchor(context.Background(), "pass\n")
	if err == nil || !strings.Contains(err.Error(), "stdin:9: syntax error") || !strings.Contains(err.Error(), "pf rules not loaded") {
		t.Fatalf("LoadAnchor error %v should carry pfctl's stderr", err)
	}
	if _, err := pf.TableEntries(context.Background()); err == nil || !strings.Contains(err.Error(), "Table does not exist") {
		t.Fatalf("TableEntries error %v should carry pfctl's stderr", err)
	}
}

func TestShowTable(t *testing.T) {
	out, err := os.ReadFile("testdata/table-show.txt")
	if err != nil {
		t.Fatal(err)
	}
	rec := cmdruntest.New(map[string]cmdruntest.Reply{"/sbin/pfctl -a redis-carp-proxy -t redis_allow -T show": {Stdout: string(out)}})
	pf := &PF{Runner: rec, Anchor: "redis-carp-proxy", Table: "redis_allow"}
	got, err := pf.TableEntries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, e := range got {
		s = append(s, e.String())
	}
	want := "198.51.100.1 198.51.100.2 198.51.100.3 198.51.100.64/26 !198.51.100.70 2001:db8::/32"
	if strings.Join(s, " ") != want {
		t.Fatalf("got %q, want %q", strings.Join(s, " "), want)
	}
	if _, err := ParseTableShow("   198.51.100.1\n   not-an-address\n"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad line not reported: %v", err)
	}
}

func TestAllowListEditKeepsComments(t *testing.T) {
	in := "# web servers\n198.51.100.10 # web1\n198.51.100.11\n\n# redis hosts\n198.51.100.1 198.51.100.2\n"
	l, err := ParseAllowList([]byte(in), "allow.list")
	if err != nil {
		t.Fatal(err)
	}
	mustP := func(s string) netip.Prefix {
		p, err := ParseEntry(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if l.Add(mustP("198.51.100.11")) {
		t.Error("duplicate added")
	}
	if !l.Add(mustP("198.51.100.128/25")) {
		t.Error("new entry not added")
	}
	if !l.Remove(mustP("198.51.100.10")) || !l.Remove(mustP("198.51.100.2")) {
		t.Error("remove failed")
	}
	if l.Remove(mustP("198.51.100.99")) {
		t.Error("removed an absent entry")
	}
	want := "# web servers\n# web1\n198.51.100.11\n\n# redis hosts\n198.51.100.1\n198.51.100.128/25\n"
	if got := string(l.Bytes()); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if _, err := ParseAllowList([]byte("198.51.100.1\nweb.example\n"), "allow.list"); err == nil || !strings.Contains(err.Error(), "allow.list:2") {
		t.Fatalf("bad entry not reported with its line: %v", err)
	}
}

func TestShippedAllowListSample(t *testing.T) {
	got, err := os.ReadFile("../etc/redis-carp-proxy.allow.list.sample")
	if err != nil || string(got) != AllowListHeader {
		t.Fatalf("etc/redis-carp-proxy.allow.list.sample must equal AllowListHeader (%v)", err)
	}
	if l, err := ParseAllowList(got, "sample"); err != nil || len(l.Entries()) != 0 {
		t.Fatalf("sample: %v %v", l, err)
	}
}

// TestRenderCoversEveryPort (issue 28, findings 3, 11, 12): the client rules cover the TLS
// port too and carry the per-source limits; the Redis, bus and admin ports are blocked on
// every interface (not only pf-internal-interface), lo0 and the allowlist passing.
func TestRenderCoversEveryPort(t *testing.T) {
	c, err := config.LoadFile("testdata/configs/full.conf")
	if err != nil {
		t.Fatal(err)
	}
	c.TLSPort, c.TLSCertFile, c.TLSKeyFile = 6380, "/c", "/k"
	c.PFMaxSrcConn, c.PFMaxSrcConnRate = 200, "100/10"
	p, err := FromConfig(c, "full.conf")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	checkGrammar(t, got)
	for _, want := range []string{
		"pass in quick proto tcp from { 198.51.100.0/26 198.51.100.200 } to 198.51.100.100 port { 6379 6380 } keep state (max-src-conn 200, max-src-conn-rate 100/10)",
		"block in log quick proto tcp to 198.51.100.100 port { 6379 6380 }",
		"pass in quick on lo0 proto tcp to port { 7000:7100 17000:17100 9479 } keep state",
		"block in log quick proto tcp to port { 7000:7100 17000:17100 9479 }",
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("missing rule %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "block in log quick on ") {
		t.Errorf("a block rule is limited to one interface:\n%s", got)
	}
	for _, bad := range []string{"0/10", "10", "x/1", "1/0"} {
		if err := c.Set("pf-max-src-conn-rate", bad); err == nil {
			t.Errorf("pf-max-src-conn-rate %q accepted", bad)
		}
	}
}

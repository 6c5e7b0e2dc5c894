// Package config reads the redis-carp-proxy configuration: a redis.conf-style file of
// "key value" lines with "#" comments, where every key can also be given as a command-line
// flag of the same name (flags win over the file).
package config

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config is the complete daemon configuration. The zero value is not useful: start from
// Default, then apply a file and flags.
type Config struct {
	// Client side.
	Listen               string
	MaxClients           int
	ClientPipelineDepth  int
	ClientIdleTimeout    time.Duration
	TCPKeepalive         time.Duration
	ProtoMaxBulkLen      int64
	ProtoMaxMultibulkLen int
	ProtoInlineMaxSize   int
	QueryBufferLimit     int64
	ShutdownTimeout      time.Duration
	EnableFlushall       bool
	EnableAdminCommands  bool
	RequirePass          string
	Users                []User
	ReadFrom             string
	AnnounceAddress      string

	// Security (docs/security.md): limits of a client that has not authenticated yet
	// (Redis's: 10 arguments, 16 KiB each).
	UnauthenticatedMaxBulkLen      int64
	UnauthenticatedMaxMultibulkLen int
	ClientAuthTimeout              time.Duration
	AuthMaxFailures                int
	// Files holding secrets instead of the configuration file or the command line
	// (secretfiles.go): read at load, and again at every reload.
	RequirePassFile     string
	UsersFile           string
	BackendPasswordFile string

	// Hardening: output buffer limits, command deny-list, client-side TLS.
	OutputLimit       OutputLimit
	OutputLimitPubSub OutputLimit
	MaxmemoryClients  int64 // bound on the bytes held for all clients together (0: none)
	DenyCommands      []string
	TLSPort           int
	TLSCertFile       string
	TLSKeyFile        string
	TLSCACertFile     string
	TLSAuthClients    bool

	// Cluster and backends.
	ClusterSeeds          []string
	BackendConnections    int
	EventLoops            int
	BackendConnectTimeout time.Duration
	BackendReadTimeout    time.Duration
	BackendQueueDepth     int
	BlockingConnections   int
	TrackingTableMaxKeys  int
	SlotmapRefresh        time.Duration
	SlotmapFastRefresh    time.Duration
	BackendSuspectAfter   time.Duration
	BackendBusyTimeout    time.Duration
	MaxRedirects          int
	RedirectBudget        time.Duration
	TryagainRetries       int
	TryagainBackoff       time.Duration
	BackendUser           string
	BackendPassword       string
	TLSCluster            bool
	BackendTLSCertFile    string
	BackendTLSKeyFile     string
	BackendTLSCACertFile  string

	// Admin listener and logging.
	AdminListen       string
	AdminListenPublic bool
	AdminPprof        bool
	SlowlogSlowerThan time.Duration
	SlowlogMaxLen     int
	HotkeysSampleRate int
	HotkeysWindow     time.Duration
	LogLevel          string
	LogFormat         string

	// CARP.
	CarpMode         string
	CarpInterface    string
	CarpVHID         int
	VIP              string
	CarpPollInterval time.Duration
	DrainTimeout     time.Duration
	// In-place restart (internal/handoff): the socket a successor connects to, and how
	// long a process told to expect one (SIGUSR2) waits for it after SIGTERM.
	HandoffSocket   string
	HandoffWait     time.Duration
	ReloadRestart   bool // a SIGHUP that changes a key needing a restart starts a successor
	CarpDemote      bool
	CarpDemoteAfter time.Duration
	CarpHealthFile  string
	// Active-active: several VIPs, one listener and gate each (vips); the advskew rotation
	// and password `setup` writes into rc.conf.d.
	VIPs            []VIPSpec
	CarpHostIndex   int
	CarpHosts       int
	CarpAdvskewStep int
	CarpPassFile    string
	// CarpPeers: unicast CARP, the other host's addresses (at most one per family).
	CarpPeers []string
	// Planned handover (redis-carp-proxy handover): the other proxies' admin addresses
	// asked whether they can take the VIPs, whether stop hands over first, the bound.
	HandoverPeers   []string
	HandoverOnStop  bool
	HandoverTimeout time.Duration

	// pf allowlist anchor.
	PFAnchor            string
	PFTable             string
	PFAllowFile         string
	PFAnchorFile        string
	PFInternalInterface string
	PFSyncInterface     string
	PFSyncPeer          string
	PFLBNetwork         []string
	RedisPorts          string
	PFLog               bool
	// PFReload: SIGHUP also replaces the pf table from PFAllowFile (needs root: /dev/pf).
	PFReload bool
	// Per-source limits on the client rules (0, "": none).
	PFMaxSrcConn     int
	PFMaxSrcConnRate string
}

// OutputLimit bounds the reply bytes the proxy holds for one client (received from the
// cluster, not yet written to the client's socket), as Redis's client-output-buffer-limit:
// a client over Hard, or over Soft for longer than SoftFor, is disconnected. Zero disables
// a limit.
type OutputLimit struct {
	Hard    int64
	Soft    int64
	SoftFor time.Duration
}

// VIPSpec is one virtual address of an active-active set: the address and its CARP vhid
// (0: not given; freebsd mode then finds it with ifconfig).
type VIPSpec struct {
	Addr string
	VHID int
}

// String is ADDR or ADDR@VHID, as written in the vips key.
func (v VIPSpec) String() string {
	if v.VHID == 0 {
		return v.Addr
	}
	return v.Addr + "@" + strconv.Itoa(v.VHID)
}

// Endpoint is one client listener of the daemon: the VIP it serves (also the label of its
// metrics), its vhid (0: unknown) and the address it binds.
type Endpoint struct {
	VIP    string
	VHID   int
	Listen string
}

// Endpoints returns the client listeners: one per entry of vips, on listen's port; without
// vips the single listen address, for the vip (else listen's host) and carp-vhid.
func (c *Config) Endpoints() []Endpoint {
	if len(c.VIPs) == 0 {
		vip := c.VIP
		if vip == "" {
			vip, _, _ = net.SplitHostPort(c.Listen)
		}
		return []Endpoint{{VIP: vip, VHID: c.CarpVHID, Listen: c.Listen}}
	}
	_, port, _ := net.SplitHostPort(c.Listen)
	out := make([]Endpoint, len(c.VIPs))
	for i, v := range c.VIPs {
		out[i] = Endpoint{VIP: v.Addr, VHID: v.VHID, Listen: net.JoinHostPort(v.Addr, port)}
	}
	return out
}

// maxAdvskew is the largest advskew carp(4) accepts that demotion can still add to
// (ip_carp.c clamps advskew + demotion to 240).
const maxAdvskew = 240

// CarpHostCount is the number of hosts in the advskew rotation: carp-hosts, else one per
// VIP.
func (c *Config) CarpHostCount() int {
	if c.CarpHosts > 0 {
		return c.CarpHosts
	}
	return max(len(c.VIPs), 1)
}

// AdvskewStep is carp-advskew-step, else 100, or less when the rotation would pass 240.
func (c *Config) AdvskewStep() int {
	if c.CarpAdvskewStep > 0 {
		return c.CarpAdvskewStep
	}
	if h := c.CarpHostCount(); h > 1 {
		return min(100, maxAdvskew/(h-1))
	}
	return 100
}

// Advskew returns this host's advskew (carp-host-index) for the VIP at index vip of vips:
// VIP i (0-based) is preferred by host i mod carp-hosts + 1 with advskew 0, the next host
// in the rotation follows with one step, and so on, so that when a host fails each of its
// VIPs moves to the host after it and no survivor takes more than its share.
func (c *Config) Advskew(vip int) int {
	h := c.CarpHostCount()
	rank := ((c.CarpHostIndex-1-vip)%h + h) % h
	return rank * c.AdvskewStep()
}

// User is a proxy-side user for AUTH.
type User struct {
	Name     string
	Password string
	ReadOnly bool
	// Admin may act on and see other clients (CLIENT LIST/KILL, SLOWLOG, PROXY HOTKEYS)
	// and, with enable-admin-commands, run the admin commands (docs/security.md).
	Admin bool
}

// Prefix is the installation prefix (the ports' PREFIX) below which the package
// installs its files; the defaults of file keys and DefaultFile are under it. A build
// for another prefix sets it with -ldflags "-X <module>/internal/config.Prefix=DIR" (the
// Makefile and the port do).
var Prefix = "/usr/local"

// DefaultFile is the configuration file the package installs and the subcommands read
// without -c: Prefix/etc/redis-carp-proxy.conf.
func DefaultFile() string { return Prefix + "/etc/redis-carp-proxy.conf" }

// Default returns the configuration used for every key that is not set.
func Default() *Config {
	c := &Config{}
	for _, k := range keys {
		if err := k.set(c, k.defValue()); err != nil {
			panic(fmt.Sprintf("config: default of %s: %v", k.name, err))
		}
	}
	return c
}

// key describes one configuration key: its name (also its flag name), default, a one-line
// description and how to parse it into a Config.
type key struct {
	name string
	def  string
	doc  string
	set  func(c *Config, v string) error
}

// defValue is the key's default with ${PREFIX} replaced by Prefix.
func (k key) defValue() string { return strings.ReplaceAll(k.def, "${PREFIX}", Prefix) }

// maxSizeLimit bounds the request size limits (1 TiB): far above any real command, low
// enough that sums of sizes cannot overflow.
const maxSizeLimit = 1 << 40

// keys lists every configuration key. The sample config documents the same set; a test
// checks that the two agree.
var keys = []key{
	{"listen", "127.0.0.1:6379", "address the client listener binds (the CARP VIP and port in production)", addrVar(func(c *Config) *string { return &c.Listen })},
	{"cluster-seeds", "", "comma-separated host:port of cluster nodes used to discover the slot map (required)", func(c *Config, v string) error {
		c.ClusterSeeds = nil
		for _, s := range splitList(v) {
			if err := checkHostPort(s); err != nil {
				return err
			}
			c.ClusterSeeds = append(c.ClusterSeeds, s)
		}
		return nil
	}},
	{"maxclients", "10000", "maximum number of client connections; more are refused with an error", intVar(1, 1<<20, func(c *Config) *int { return &c.MaxClients })},
	{"client-pipeline-depth", "1024", "maximum unanswered commands per client before the proxy stops reading from it", intVar(1, 1<<20, func(c *Config) *int { return &c.ClientPipelineDepth })},
	{"client-idle-timeout", "0s", "close client connections idle this long (0: never)", durVar(0, func(c *Config) *time.Duration { return &c.ClientIdleTimeout })},
	{"tcp-keepalive", "300s", "TCP keepalive period for client connections (0: off)", durVar(0, func(c *Config) *time.Duration { return &c.TCPKeepalive })},
	{"proto-max-bulk-len", "512mb", "largest bulk string accepted from a client", func(c *Config, v string) error {
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		if n < 1024 || n > maxSizeLimit {
			return fmt.Errorf("must be between 1kb and %d bytes", int64(maxSizeLimit))
		}
		c.ProtoMaxBulkLen = n
		return nil
	}},
	{"proto-max-multibulk-len", "1048576", "largest number of arguments in one command", intVar(1, 1<<30, func(c *Config) *int { return &c.ProtoMaxMultibulkLen })},
	{"proto-inline-max-size", "65536", "longest inline (telnet-style) command line in bytes", intVar(256, 1<<30, func(c *Config) *int { return &c.ProtoInlineMaxSize })},
	{"client-query-buffer-limit", "1gb", "largest single command (all arguments together) accepted from a client", func(c *Config, v string) error {
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		if n < 1024 || n > maxSizeLimit {
			return fmt.Errorf("must be between 1kb and %d bytes", int64(maxSizeLimit))
		}
		c.QueryBufferLimit = n
		return nil
	}},
	{"unauthenticated-max-bulk-len", "16kb", "largest bulk string accepted from a client that has not authenticated yet (with requirepass or users)", func(c *Config, v string) error {
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		if n < 256 || n > maxSizeLimit {
			return fmt.Errorf("must be between 256 and %d bytes", int64(maxSizeLimit))
		}
		c.UnauthenticatedMaxBulkLen = n
		return nil
	}},
	{"unauthenticated-max-multibulk-len", "10", "largest number of arguments in a command from a client that has not authenticated yet", intVar(3, 1<<30, func(c *Config) *int { return &c.UnauthenticatedMaxMultibulkLen })},
	{"client-auth-timeout", "10s", "a client must complete its TLS handshake and (with requirepass or users) AUTH within this time of connecting, else it is closed (0: no limit)", durVar(0, func(c *Config) *time.Duration { return &c.ClientAuthTimeout })},
	{"auth-max-failures", "10", "failed AUTH attempts after which a connection is closed (0: no limit); every failure is counted in auth_failures_total and logged with the client's address, at most once a second", intVar(0, 1<<20, func(c *Config) *int { return &c.AuthMaxFailures })},
	{"requirepass", "", "password clients must give with AUTH (empty: no authentication unless users are set)", strVar(func(c *Config) *string { return &c.RequirePass })},
	{"users", "", "named proxy users, space-separated name:password[:readonly|:admin] entries (AUTH name password); admin users may see and act on other clients", func(c *Config, v string) error {
		c.Users = nil
		for i, f := range strings.Fields(v) {
			parts := strings.Split(f, ":")
			if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" || len(parts) == 3 && parts[2] != "readonly" && parts[2] != "admin" {
				// Never the entry itself: it holds a password (and without a colon it may
				// be nothing but one).
				if len(parts) < 2 {
					return fmt.Errorf("entry %d: want name:password[:readonly|:admin]", i+1)
				}
				return fmt.Errorf("entry %d (user %q): want name:password[:readonly|:admin]", i+1, parts[0])
			}
			c.Users = append(c.Users, User{Name: parts[0], Password: parts[1], ReadOnly: len(parts) == 3 && parts[2] == "readonly", Admin: len(parts) == 3 && parts[2] == "admin"})
		}
		return nil
	}},
	{"requirepass-file", "", "file holding requirepass (one line; not readable by others), instead of requirepass in this file or on the command line", strVar(func(c *Config) *string { return &c.RequirePassFile })},
	{"users-file", "", "file holding the users entries (name:password[:readonly|:admin], blank- or newline-separated; not readable by others), instead of users", strVar(func(c *Config) *string { return &c.UsersFile })},
	{"read-from", "master", "where read-only commands go: master, replica or prefer-replica", enumVar(func(c *Config) *string { return &c.ReadFrom }, "master", "replica", "prefer-replica")},
	{"enable-flushall", "no", "allow FLUSHALL and FLUSHDB through the proxy (they empty every master)", boolVar(func(c *Config) *bool { return &c.EnableFlushall })},
	{"enable-admin-commands", "no", "allow CONFIG SET/RESETSTAT/REWRITE, CLIENT PAUSE/UNPAUSE, LATENCY RESET and SLOWLOG RESET on every cluster node through the proxy (settings the proxy owns, such as slowlog-* and maxclients, apply to the proxy)", boolVar(func(c *Config) *bool { return &c.EnableAdminCommands })},
	{"announce-address", "", "address the proxy reports in CLUSTER SLOTS/NODES/SHARDS as the one node owning every slot (empty: listen)", func(c *Config, v string) error {
		if v == "" {
			c.AnnounceAddress = ""
			return nil
		}
		return addrVar(func(c *Config) *string { return &c.AnnounceAddress })(c, v)
	}},
	{"shutdown-timeout", "10s", "on SIGTERM, how long in-flight commands may take to finish", durVar(0, func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
	{"client-output-buffer-limit", "256mb 64mb 60s", "reply bytes held for one client not reading them: hard limit, soft limit, soft duration (0: off); over it the client is disconnected", outputLimitVar(func(c *Config) *OutputLimit { return &c.OutputLimit })},
	{"client-output-buffer-limit-pubsub", "32mb 8mb 60s", "the same for clients in Pub/Sub mode (messages not yet written to a subscriber)", outputLimitVar(func(c *Config) *OutputLimit { return &c.OutputLimitPubSub })},
	{"maxmemory-clients", "0", "bytes held for all clients together (replies and messages not yet written, commands not yet parsed), as Redis's maxmemory-clients; over it the clients holding the most are closed first (0: no bound)", func(c *Config, v string) error {
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		c.MaxmemoryClients = n
		return nil
	}},
	{"deny-commands", "", "space-separated commands the proxy refuses with an error (e.g. FLUSHALL KEYS DEBUG)", func(c *Config, v string) error {
		c.DenyCommands = nil
		for _, f := range splitList(v) {
			c.DenyCommands = append(c.DenyCommands, strings.ToLower(f))
		}
		return nil
	}},
	{"tls-port", "0", "TLS client listener port on the host of listen (0: no TLS listener)", intVar(0, 65535, func(c *Config) *int { return &c.TLSPort })},
	{"tls-cert-file", "", "certificate (PEM) of the TLS client listener", strVar(func(c *Config) *string { return &c.TLSCertFile })},
	{"tls-key-file", "", "private key (PEM) of the TLS client listener", strVar(func(c *Config) *string { return &c.TLSKeyFile })},
	{"tls-ca-cert-file", "", "CA certificates (PEM) client certificates are checked against (with tls-auth-clients)", strVar(func(c *Config) *string { return &c.TLSCACertFile })},
	{"tls-auth-clients", "no", "require TLS clients to present a certificate signed by tls-ca-cert-file", boolVar(func(c *Config) *bool { return &c.TLSAuthClients })},

	{"event-loops", "0", "event loops serving plain TCP clients, each with its own connection to every node (0: one per two cores, at most 8)", intVar(0, 256, func(c *Config) *int { return &c.EventLoops })},
	{"backend-connections", "2", "obsolete, accepted and ignored (kept so that existing files load): every command goes through the event loops' one pipelined connection per node each; see event-loops", intVar(1, 64, func(c *Config) *int { return &c.BackendConnections })},
	{"backend-connect-timeout", "1s", "timeout for connecting to a cluster node", durVar(time.Millisecond, func(c *Config) *time.Duration { return &c.BackendConnectTimeout })},
	{"backend-read-timeout", "3s", "a node that sends no reply for this long while commands are pending is timed out", durVar(time.Millisecond, func(c *Config) *time.Duration { return &c.BackendReadTimeout })},
	{"backend-queue-depth", "4096", "obsolete, accepted and ignored (kept so that existing files load): the event loops' node connections queue without a fixed depth, bounded by client-pipeline-depth per client", intVar(1, 1<<20, func(c *Config) *int { return &c.BackendQueueDepth })},
	{"blocking-connections", "1000", "private node connections, all nodes together: one per client blocked in a command (BLPOP, XREAD BLOCK, WAIT …), in a transaction (WATCH … EXEC) or subscribed (each Pub/Sub relay); a command beyond the limit gets an error", intVar(1, 1<<20, func(c *Config) *int { return &c.BlockingConnections })},
	{"tracking-table-max-keys", "1000000", "keys the proxy remembers for clients with CLIENT TRACKING on (client-side caching); when full, a key is evicted and its clients get its invalidation, as Redis's tracking-table-max-keys (0: no limit)", intVar(0, 1<<30, func(c *Config) *int { return &c.TrackingTableMaxKeys })},
	{"slotmap-refresh-interval", "5s", "periodic slot map refresh (also refreshed on MOVED, CLUSTERDOWN and connection loss)", durVar(100*time.Millisecond, func(c *Config) *time.Duration { return &c.SlotmapRefresh })},
	{"slotmap-fast-refresh-interval", "25ms", "slot map refresh interval while a node that serves slots is suspect or flagged fail?/fail in CLUSTER NODES (until the cluster names a new owner or the node recovers)", durVar(5*time.Millisecond, func(c *Config) *time.Duration { return &c.SlotmapFastRefresh })},
	{"backend-busy-timeout", "5m", "how long commands wait for a node that is executing rather than gone: it answers a fresh connection -BUSY (a script runs past its busy-reply-threshold) or -LOADING (it loads its dataset), or the proxy fanned out a CLIENT PAUSE that still runs; meanwhile backend-read-timeout does not apply to it (0: never wait beyond backend-read-timeout)", durVar(0, func(c *Config) *time.Duration { return &c.BackendBusyTimeout })},
	{"backend-suspect-after", "200ms", "a node with commands waiting this long for a reply (or a failed or refused connection) is suspect: the slot map is refreshed at once and then every slotmap-fast-refresh-interval", durVar(time.Millisecond, func(c *Config) *time.Duration { return &c.BackendSuspectAfter })},
	{"max-redirects", "5", "MOVED/ASK redirections followed at once for one command; after that the proxy backs off and refreshes the slot map between redirections, within redirect-budget", intVar(1, 100, func(c *Config) *int { return &c.MaxRedirects })},
	{"redirect-budget", "1s", "how long one command may keep following redirections that loop (nodes disagree while a new slot owner spreads) before the proxy gives up", durVar(0, func(c *Config) *time.Duration { return &c.RedirectBudget })},
	{"tryagain-retries", "10", "retries of a command answered with TRYAGAIN or not sent because its node was unreachable", intVar(0, 1000, func(c *Config) *int { return &c.TryagainRetries })},
	{"tryagain-backoff", "25ms", "pause before such a retry", durVar(0, func(c *Config) *time.Duration { return &c.TryagainBackoff })},
	{"backend-user", "", "ACL user for the cluster nodes (empty: default user)", strVar(func(c *Config) *string { return &c.BackendUser })},
	{"backend-password", "", "password for the cluster nodes (empty: no AUTH)", strVar(func(c *Config) *string { return &c.BackendPassword })},
	{"backend-password-file", "", "file holding backend-password (one line; not readable by others), instead of backend-password", strVar(func(c *Config) *string { return &c.BackendPasswordFile })},
	{"tls-cluster", "no", "connect to the cluster nodes with TLS (clusters started with tls-port and tls-cluster yes)", boolVar(func(c *Config) *bool { return &c.TLSCluster })},
	{"backend-tls-cert-file", "", "client certificate (PEM) presented to TLS cluster nodes (needed when they use tls-auth-clients yes)", strVar(func(c *Config) *string { return &c.BackendTLSCertFile })},
	{"backend-tls-key-file", "", "private key (PEM) of backend-tls-cert-file", strVar(func(c *Config) *string { return &c.BackendTLSKeyFile })},
	{"backend-tls-ca-cert-file", "", "CA certificates (PEM) the cluster nodes' certificates are checked against (empty: system roots)", strVar(func(c *Config) *string { return &c.BackendTLSCACertFile })},

	{"admin-listen", "127.0.0.1:9479", "admin HTTP listener for /metrics, /healthz, /readyz, /debug/hotkeys (never the VIP; empty: off)", func(c *Config, v string) error {
		if v == "" {
			c.AdminListen = ""
			return nil
		}
		return addrVar(func(c *Config) *string { return &c.AdminListen })(c, v)
	}},
	{"admin-listen-public", "no", "allow admin-listen on a wildcard address (0.0.0.0, ::, :PORT) or the vip; /debug/hotkeys and pprof are served to loopback clients only either way", boolVar(func(c *Config) *bool { return &c.AdminListenPublic })},
	{"admin-pprof", "no", "serve /debug/pprof/ on the admin listener", boolVar(func(c *Config) *bool { return &c.AdminPprof })},
	{"slowlog-log-slower-than", "10ms", "commands slower than this end to end are kept for SLOWLOG GET (0: every command; negative not allowed)", durVar(0, func(c *Config) *time.Duration { return &c.SlowlogSlowerThan })},
	{"slowlog-max-len", "128", "entries kept for SLOWLOG GET", intVar(0, 100000, func(c *Config) *int { return &c.SlowlogMaxLen })},
	{"hotkeys-sample-rate", "16", "count one in N keys for the hot key report (1: every key; 0: off)", intVar(0, 1<<20, func(c *Config) *int { return &c.HotkeysSampleRate })},
	{"hotkeys-window", "60s", "the hot key report covers about this much recent time", durVar(time.Second, func(c *Config) *time.Duration { return &c.HotkeysWindow })},
	{"log-level", "info", "debug, info, warn or error", enumVar(func(c *Config) *string { return &c.LogLevel }, "debug", "info", "warn", "error")},
	{"log-format", "text", "text or json", enumVar(func(c *Config) *string { return &c.LogFormat }, "text", "json")},

	{"carp-mode", "static", "freebsd (kernel CARP state), vip (serve while the VIP is on a local interface, Linux) or static (always serve)", enumVar(func(c *Config) *string { return &c.CarpMode }, "freebsd", "vip", "static")},
	{"carp-interface", "", "interface carrying the CARP vhid (freebsd mode; optional in vip mode)", strVar(func(c *Config) *string { return &c.CarpInterface })},
	{"carp-vhid", "0", "CARP vhid to follow (0: find it from vip)", intVar(0, 255, func(c *Config) *int { return &c.CarpVHID })},
	{"vip", "", "the CARP virtual IP address", func(c *Config, v string) error {
		if v == "" {
			c.VIP = ""
			return nil
		}
		if _, err := netip.ParseAddr(v); err != nil {
			return fmt.Errorf("not an IP address: %q", v)
		}
		c.VIP = v
		return nil
	}},
	{"carp-poll-interval", "1s", "how often the CARP state is re-read as a safety net", durVar(10*time.Millisecond, func(c *Config) *time.Duration { return &c.CarpPollInterval })},
	{"drain-timeout", "3s", "after losing MASTER, how long existing clients may finish before they are closed; in an in-place restart, how long the old process passes its clients to the new one as they become idle before it closes the rest", durVar(0, func(c *Config) *time.Duration { return &c.DrainTimeout })},
	{"handoff-socket", "", "unix socket on which a running proxy hands its listeners and idle clients to its successor (service restart, upgrade); in a directory of mode 0700 owned by the proxy's user (empty: /var/run/redis-carp-proxy/ plus the configuration file name with .sock for .conf, and off without a configuration file; none: off)", strVar(func(c *Config) *string { return &c.HandoffSocket })},
	{"reload-restart", "yes", "a SIGHUP that changes a key needing a restart starts a new process with the same arguments and hands over to it in place (listeners and idle clients, as service restart does); no: the change waits for a restart", boolVar(func(c *Config) *bool { return &c.ReloadRestart })},
	{"handoff-wait", "30s", "how long a proxy told to expect a successor (SIGUSR2, sent by service restart and upgrade) keeps serving after SIGTERM until the successor connects", durVar(time.Second, func(c *Config) *time.Duration { return &c.HandoffWait })},
	{"carp-demote", "no", "demote this host's CARP when the proxy cannot serve (needs net.inet.carp.preempt=1)", boolVar(func(c *Config) *bool { return &c.CarpDemote })},
	{"carp-demote-after", "10s", "how long the proxy must be unable to serve before it demotes", durVar(0, func(c *Config) *time.Duration { return &c.CarpDemoteAfter })},
	{"carp-health-file", "", "file holding the demotion this proxy applies (0 or 240); vip mode: keepalived's track_file (empty: off); freebsd mode: read at start to undo a demotion a crash left, one per instance (empty: /var/run/ plus the configuration file name with .demotion for .conf, e.g. redis-carp-proxy-NAME.demotion for profile NAME)", strVar(func(c *Config) *string { return &c.CarpHealthFile })},
	{"vips", "", "active-active: comma-separated virtual addresses ADDR@VHID (vhid optional unless setup writes the CARP lines), each served on listen's port by its own listener following its own CARP state; replaces vip and carp-vhid (empty: the single vip)", func(c *Config, v string) error {
		c.VIPs = nil
		for _, f := range splitList(v) {
			addr, vh, hasVHID := strings.Cut(f, "@")
			a, err := netip.ParseAddr(addr)
			if err != nil || a.Zone() != "" {
				return fmt.Errorf("not an IP address: %q", addr)
			}
			spec := VIPSpec{Addr: a.Unmap().String()}
			if hasVHID {
				n, err := strconv.Atoi(vh)
				if err != nil || n < 1 || n > 255 {
					return fmt.Errorf("vhid of %s: want 1 to 255, got %q", addr, vh)
				}
				spec.VHID = n
			}
			c.VIPs = append(c.VIPs, spec)
		}
		return nil
	}},
	{"carp-host-index", "0", "this host's place (1 to carp-hosts) in the advskew rotation setup writes for vips: host i is preferred (advskew 0) for the i-th VIP (0: not set)", intVar(0, 255, func(c *Config) *int { return &c.CarpHostIndex })},
	{"carp-hosts", "0", "hosts sharing the vips (0: one per VIP)", intVar(0, 255, func(c *Config) *int { return &c.CarpHosts })},
	{"carp-advskew-step", "0", "advskew between two places of the rotation (0: 100, or 240/(carp-hosts-1) when smaller)", intVar(0, maxAdvskew, func(c *Config) *int { return &c.CarpAdvskewStep })},
	{"carp-pass-file", "", "file holding the CARP password (one line, mode 0600) that setup --carp writes into the ifconfig lines (empty: setup prints PASSWORD)", strVar(func(c *Config) *string { return &c.CarpPassFile })},
	{"carp-peers", "", "unicast CARP (FreeBSD 14 and later): the other host's address on carp-interface, IPv4 and/or IPv6 (comma-separated, one per family); setup --carp writes it as peer (peer6) into each VIP's ifconfig line, so advertisements need no multicast (no promiscuous port group on a hypervisor); unicast has one peer per vhid, so two hosts (empty: multicast to 224.0.0.18 and ff02::12)", func(c *Config, v string) error {
		c.CarpPeers = nil
		seen := map[bool]string{}
		for _, f := range splitList(v) {
			a, err := netip.ParseAddr(f)
			if err != nil || a.Zone() != "" || a.IsMulticast() || a.IsUnspecified() {
				return fmt.Errorf("not a unicast IP address: %q", f)
			}
			a = a.Unmap()
			if other, dup := seen[a.Is4()]; dup {
				return fmt.Errorf("%s and %s: CARP sends to one peer per address family (unicast CARP serves two hosts)", other, a)
			}
			seen[a.Is4()] = a.String()
			c.CarpPeers = append(c.CarpPeers, a.String())
		}
		return nil
	}},

	{"handover-peers", "", "planned handover: the other hosts' proxies as their admin-listen HOST:PORT (comma-separated); handover asks their /readyz and hands a VIP over only while one of them is BACKUP with a complete slot map (empty: carp-peers with this host's admin-listen port; none: handover refuses unless --force)", func(c *Config, v string) error {
		c.HandoverPeers = nil
		for _, f := range splitList(v) {
			if err := checkHostPort(f); err != nil {
				return err
			}
			c.HandoverPeers = append(c.HandoverPeers, f)
		}
		return nil
	}},
	{"handover-on-stop", "yes", "the rc script's stop hands this host's VIPs over first (redis-carp-proxy handover) when it serves one and a peer is ready to take it", boolVar(func(c *Config) *bool { return &c.HandoverOnStop })},
	{"handover-timeout", "30s", "how long a planned handover may take (peer check, the VIPs moving, the drain) before it gives up and undoes its demotion", durVar(time.Second, func(c *Config) *time.Duration { return &c.HandoverTimeout })},
	{"pf-anchor", "redis-carp-proxy", "pf anchor holding the allowlist rules", strVar(func(c *Config) *string { return &c.PFAnchor })},
	{"pf-table", "redis_allow", "pf table of addresses allowed to reach Redis and the admin port", strVar(func(c *Config) *string { return &c.PFTable })},
	{"pf-allow-file", "${PREFIX}/etc/redis-carp-proxy/allow.list", "file with one allowed address or CIDR per line", strVar(func(c *Config) *string { return &c.PFAllowFile })},
	{"pf-anchor-file", "${PREFIX}/etc/redis-carp-proxy/pf.anchor", "the rendered anchor, written by setup and pf apply; pf.conf loads it at boot (load anchor)", strVar(func(c *Config) *string { return &c.PFAnchorFile })},
	{"pf-internal-interface", "", "interface the Redis cluster nodes talk on (empty: any)", strVar(func(c *Config) *string { return &c.PFInternalInterface })},
	{"pfsync-interface", "", "interface pfsync runs on (empty: no pfsync rule)", strVar(func(c *Config) *string { return &c.PFSyncInterface })},
	{"pfsync-peer", "", "pfsync peer address (empty: multicast)", strVar(func(c *Config) *string { return &c.PFSyncPeer })},
	{"pf-lb-network", "", "comma-separated networks allowed to reach the proxy on the VIP (empty: any)", func(c *Config, v string) error {
		c.PFLBNetwork = nil
		for _, s := range splitList(v) {
			if _, err := netip.ParsePrefix(s); err != nil {
				if _, err2 := netip.ParseAddr(s); err2 != nil {
					return fmt.Errorf("not an address or CIDR: %q", s)
				}
			}
			c.PFLBNetwork = append(c.PFLBNetwork, s)
		}
		return nil
	}},
	{"redis-ports", "7000:7100", "Redis client and bus port range protected by the pf anchor (low:high)", func(c *Config, v string) error {
		lo, hi, ok := strings.Cut(v, ":")
		if !ok {
			hi = lo
		}
		l, err1 := strconv.Atoi(lo)
		h, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || l < 1 || h > 65535 || l > h {
			return fmt.Errorf("want a port or low:high range, got %q", v)
		}
		c.RedisPorts = v
		return nil
	}},
	{"pf-log", "no", "log blocked packets to pflog", boolVar(func(c *Config) *bool { return &c.PFLog })},
	{"pf-reload", "no", "on FreeBSD, a SIGHUP reload also replaces pf-table with pf-allow-file (opens /dev/pf: the daemon must run as root; allow add|del and pf apply load the table without it)", boolVar(func(c *Config) *bool { return &c.PFReload })},
	{"pf-max-src-conn", "0", "most simultaneous client connections pf lets one source address open to the proxy ports (0: no limit; a load balancer or NAT in front is one source)", intVar(0, 1<<24, func(c *Config) *int { return &c.PFMaxSrcConn })},
	{"pf-max-src-conn-rate", "", "most new client connections one source address may open in a period, as N/SECONDS like 100/10 (empty: no limit)", func(c *Config, v string) error {
		if v == "" {
			c.PFMaxSrcConnRate = ""
			return nil
		}
		n, s, ok := strings.Cut(v, "/")
		a, err1 := strconv.Atoi(n)
		b, err2 := strconv.Atoi(s)
		if !ok || err1 != nil || err2 != nil || a < 1 || b < 1 || a > 1<<24 || b > 86400 {
			return fmt.Errorf("want CONNECTIONS/SECONDS like 100/10, got %q", v)
		}
		c.PFMaxSrcConnRate = strconv.Itoa(a) + "/" + strconv.Itoa(b)
		return nil
	}},
}

// Keys returns the names of all keys, in documentation order.
func Keys() []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.name
	}
	return out
}

// Describe returns the default and description of a key.
func Describe(name string) (def, doc string, ok bool) {
	for _, k := range keys {
		if k.name == name {
			return k.defValue(), k.doc, true
		}
	}
	return "", "", false
}

// Set parses v as the file would for the key name and stores it in c: the same syntax and
// the same bounds (CONFIG SET of a setting the proxy owns goes through it).
func (c *Config) Set(name, v string) error {
	k := lookup(name)
	if k == nil {
		return fmt.Errorf("unknown key %q", name)
	}
	if err := k.set(c, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func lookup(name string) *key {
	for i := range keys {
		if keys[i].name == name {
			return &keys[i]
		}
	}
	return nil
}

// LineError is a configuration error tied to a line of a file.
type LineError struct {
	File string
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Parse applies the lines read from r (named name in errors) on top of c.
func (c *Config) Parse(r io.Reader, name string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	seen := map[string]int{}
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		if i := strings.IndexAny(k, "\t"); i >= 0 {
			k, v = line[:i], line[i+1:]
		}
		k = strings.ToLower(k)
		v = unquote(strings.TrimSpace(v))
		kk := lookup(k)
		if kk == nil {
			return &LineError{name, n, fmt.Errorf("unknown key %q", k)}
		}
		if prev, dup := seen[k]; dup {
			return &LineError{name, n, fmt.Errorf("%s already set on line %d", k, prev)}
		}
		seen[k] = n
		if err := kk.set(c, v); err != nil {
			return &LineError{name, n, fmt.Errorf("%s: %w", k, err)}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// LoadFile reads a config file on top of the defaults and validates the result.
func LoadFile(path string) (*Config, error) {
	c := Default()
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	if err := c.Parse(f, path); err != nil {
		return nil, err
	}
	if err := c.ReadSecretFiles(); err != nil {
		return nil, err
	}
	return c, c.Validate()
}

// FlagSet holds the command-line flags of every key plus -c FILE.
type FlagSet struct {
	*flag.FlagSet
	file string
	set  []func(*Config) error
}

// NewFlagSet returns a flag set named name with one flag per key and -c for the file.
func NewFlagSet(name string) *FlagSet {
	fs := &FlagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError)}
	fs.StringVar(&fs.file, "c", "", "configuration `file`")
	for _, k := range keys {
		k := k
		fs.Func(k.name, fmt.Sprintf("%s (default %q)", k.doc, k.defValue()), func(v string) error {
			if err := k.set(Default(), v); err != nil {
				return err
			}
			fs.set = append(fs.set, func(c *Config) error { return k.set(c, v) })
			return nil
		})
	}
	return fs
}

// File returns the -c argument.
func (fs *FlagSet) File() string { return fs.file }

// Load builds the configuration: defaults, then the -c file if given, then the flags.
// It must be called after Parse.
func (fs *FlagSet) Load() (*Config, error) {
	c := Default()
	if fs.file != "" {
		f, err := os.Open(fs.file)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		err = c.Parse(f, fs.file)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	for _, set := range fs.set {
		if err := set(c); err != nil {
			return nil, err
		}
	}
	if err := c.ReadSecretFiles(); err != nil {
		return nil, err
	}
	return c, c.Validate()
}

// Validate checks the relations between keys.
func (c *Config) Validate() error {
	var errs []error
	if len(c.ClusterSeeds) == 0 {
		errs = append(errs, errors.New("cluster-seeds: at least one seed is required"))
	}
	if c.TLSPort != 0 && (c.TLSCertFile == "" || c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls-port needs tls-cert-file and tls-key-file"))
	}
	if c.TLSAuthClients && c.TLSCACertFile == "" {
		errs = append(errs, errors.New("tls-auth-clients yes needs tls-ca-cert-file"))
	}
	if (c.BackendTLSCertFile == "") != (c.BackendTLSKeyFile == "") {
		errs = append(errs, errors.New("backend-tls-cert-file and backend-tls-key-file go together"))
	}
	switch c.CarpMode {
	case "freebsd":
		if c.CarpInterface == "" && c.VIP == "" {
			errs = append(errs, errors.New("carp-mode freebsd needs carp-interface and carp-vhid, or vip"))
		}
	case "vip":
		if c.VIP == "" && len(c.VIPs) == 0 {
			errs = append(errs, errors.New("carp-mode vip needs vip or vips"))
		}
	}
	errs = append(errs, c.validateVIPs()...)
	if err := c.validateAdminListen(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// validateVIPs checks the active-active keys: distinct addresses and vhids, no single-VIP
// key beside them, a listen port every VIP can use, a rotation within carp(4)'s advskew.
func (c *Config) validateVIPs() []error {
	var errs []error
	if c.CarpHostIndex > c.CarpHostCount() {
		errs = append(errs, fmt.Errorf("carp-host-index %d is beyond the %d hosts of the rotation (carp-hosts)", c.CarpHostIndex, c.CarpHostCount()))
	}
	if h := c.CarpHostCount(); (h-1)*c.AdvskewStep() > maxAdvskew {
		errs = append(errs, fmt.Errorf("carp-advskew-step %d: %d hosts need advskew up to %d, carp(4) allows %d (use at most %d)",
			c.AdvskewStep(), h, (h-1)*c.AdvskewStep(), maxAdvskew, maxAdvskew/(h-1)))
	}
	if h := c.CarpHostCount(); len(c.CarpPeers) > 0 && h > 2 {
		errs = append(errs, fmt.Errorf("carp-peers: unicast CARP sends each advertisement to one peer, so it serves two hosts; the rotation has %d (carp-hosts, or one per VIP): leave carp-peers empty for multicast", h))
	}
	if len(c.VIPs) == 0 {
		return errs
	}
	if c.VIP != "" {
		errs = append(errs, errors.New("vips and vip are exclusive: list every virtual address in vips"))
	}
	if c.CarpVHID != 0 {
		errs = append(errs, errors.New("vips and carp-vhid are exclusive: give each VIP its vhid as ADDR@VHID"))
	}
	addrs, vhids := map[string]bool{}, map[int]string{}
	for _, v := range c.VIPs {
		if addrs[v.Addr] {
			errs = append(errs, fmt.Errorf("vips: %s is listed twice", v.Addr))
		}
		addrs[v.Addr] = true
		if v.VHID != 0 {
			if other, dup := vhids[v.VHID]; dup {
				errs = append(errs, fmt.Errorf("vips: vhid %d is given to both %s and %s", v.VHID, other, v.Addr))
			}
			vhids[v.VHID] = v.Addr
		}
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return append(errs, fmt.Errorf("listen %q: %w", c.Listen, err))
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 {
		errs = append(errs, fmt.Errorf("listen %q: with vips every VIP listens on listen's port, which must be 1 to 65535", c.Listen))
	} else if p == c.TLSPort {
		errs = append(errs, fmt.Errorf("tls-port %d is listen's port", p))
	}
	if host != "" {
		a, err := netip.ParseAddr(host)
		if err != nil || !a.IsUnspecified() && !addrs[a.Unmap().String()] {
			errs = append(errs, fmt.Errorf("listen %q: with vips, listen gives the port (write :%s); its host, if any, must be one of the vips", c.Listen, port))
		}
	}
	if ah, _, err := net.SplitHostPort(c.AdminListen); err == nil && addrs[ah] {
		errs = append(errs, fmt.Errorf("admin-listen %q is on a VIP: use the host's own address", c.AdminListen))
	}
	return errs
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
		return v[1 : len(v)-1]
	}
	return v
}

func splitList(v string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		out = append(out, f)
	}
	return out
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port, got %q", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("bad port in %q", s)
	}
	_ = host
	return nil
}

func addrVar(f func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if err := checkHostPort(v); err != nil {
			return err
		}
		*f(c) = v
		return nil
	}
}

func strVar(f func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *f(c) = v; return nil }
}

func enumVar(f func(*Config) *string, allowed ...string) func(*Config, string) error {
	return func(c *Config, v string) error {
		v = strings.ToLower(v)
		for _, a := range allowed {
			if v == a {
				*f(c) = v
				return nil
			}
		}
		return fmt.Errorf("want one of %s, got %q", strings.Join(allowed, ", "), v)
	}
}

func intVar(lo, hi int, f func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want an integer, got %q", v)
		}
		if n < lo || n > hi {
			return fmt.Errorf("%d out of range [%d, %d]", n, lo, hi)
		}
		*f(c) = n
		return nil
	}
}

func durVar(min time.Duration, f func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("want a duration like 500ms or 3s, got %q", v)
		}
		if d != 0 && d < min || d < 0 {
			return fmt.Errorf("%v is below the minimum %v", d, min)
		}
		*f(c) = d
		return nil
	}
}

func outputLimitVar(f func(*Config) *OutputLimit) func(*Config, string) error {
	return func(c *Config, v string) error {
		p := strings.Fields(v)
		if len(p) != 3 {
			return fmt.Errorf("want <hard> <soft> <soft-duration> like 256mb 64mb 60s, got %q", v)
		}
		hard, err := ParseSize(p[0])
		if err != nil {
			return err
		}
		soft, err := ParseSize(p[1])
		if err != nil {
			return err
		}
		d, err := time.ParseDuration(p[2])
		if p[2] == "0" {
			d, err = 0, nil
		}
		if err != nil || d < 0 {
			return fmt.Errorf("want a duration like 60s, got %q", p[2])
		}
		if hard != 0 && soft > hard {
			return fmt.Errorf("soft limit %d above hard limit %d", soft, hard)
		}
		*f(c) = OutputLimit{Hard: hard, Soft: soft, SoftFor: d}
		return nil
	}
}

func boolVar(f func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		switch strings.ToLower(v) {
		case "yes", "true", "on", "1":
			*f(c) = true
		case "no", "false", "off", "0":
			*f(c) = false
		default:
			return fmt.Errorf("want yes or no, got %q", v)
		}
		return nil
	}
}

// ParseSize parses a byte size the way redis.conf does: 1k = 1000, 1kb = 1024, up to gb.
func ParseSize(v string) (int64, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"gb", 1 << 30}, {"mb", 1 << 20}, {"kb", 1 << 10}, {"g", 1e9}, {"m", 1e6}, {"k", 1e3}, {"b", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("want a size like 512mb, got %q", v)
	}
	return n * mult, nil
}

// validateAdminListen refuses an admin listener on every address or on the VIP (where
// clients reach it) unless admin-listen-public is set.
func (c *Config) validateAdminListen() error {
	if c.AdminListen == "" || c.AdminListenPublic {
		return nil
	}
	host, _, err := net.SplitHostPort(c.AdminListen)
	if err != nil {
		return nil // addrVar already checked it
	}
	a, perr := netip.ParseAddr(host)
	if host == "" || perr == nil && a.IsUnspecified() {
		return fmt.Errorf("admin-listen %q listens on every address: give the host's own (internal) address, or set admin-listen-public yes", c.AdminListen)
	}
	if c.VIP != "" && perr == nil {
		if v, err := netip.ParseAddr(c.VIP); err == nil && v.Unmap() == a.Unmap() {
			return fmt.Errorf("admin-listen %q is on the vip: use the host's own address, or set admin-listen-public yes", c.AdminListen)
		}
	}
	return nil
}

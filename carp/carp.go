// Package carp tells whether this host holds the virtual IP the proxy serves on: the CARP
// state (INIT, BACKUP, MASTER) of one configured virtual address, and every change of it.
// It knows nothing about Redis or the proxy; cmd/redis-carp-proxy feeds its states to
// internal/gate.
//
// Modes: "freebsd" reads the kernel's carp(4) state (netlink, SIOCGVH, ifconfig) and
// follows devd's CARP events; "vip" (Linux, keepalived/ucarp style) is MASTER while the VIP
// is on a local interface; "static" is always MASTER. Every mode also re-reads the state
// every PollInterval as a safety net.
package carp

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"
)

// State is the CARP state of a virtual address, numbered as in FreeBSD's ip_carp.h.
type State int32

// CARP states.
const (
	Init   State = 0
	Backup State = 1
	Master State = 2
)

func (s State) String() string {
	switch s {
	case Init:
		return "INIT"
	case Backup:
		return "BACKUP"
	case Master:
		return "MASTER"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// ParseState parses INIT, BACKUP or MASTER (as printed by ifconfig and devd).
func ParseState(s string) (State, error) {
	switch s {
	case "INIT":
		return Init, nil
	case "BACKUP":
		return Backup, nil
	case "MASTER":
		return Master, nil
	}
	return Init, fmt.Errorf("%w: %q", ErrBadState, s)
}

// Change is one observed state, with when it was learned (for activation latency).
type Change struct {
	State State
	At    time.Time
}

// Watcher reports the state of one virtual address.
type Watcher interface {
	// Run sends the current state on ch, then every change of it, until ctx ends. It
	// returns nil when ctx ends; it never closes ch.
	Run(ctx context.Context, ch chan<- Change) error
}

// Config selects and configures a Watcher.
type Config struct {
	// Mode is "freebsd", "vip" or "static".
	Mode string
	// Interface carries the vhid (freebsd mode; optional in vip mode: any interface).
	Interface string
	// VHID to follow; 0: found from VIP (freebsd mode).
	VHID int
	// VIP is the virtual address.
	VIP string
	// PollInterval is how often the state is re-read as a safety net (default 1s).
	PollInterval time.Duration
	// Label names the address in metrics (label vip) and logs; default: VIP, else
	// "IFACE vhid N", "static" in static mode.
	Label   string
	Log     *slog.Logger
	Metrics *Metrics
}

// New returns the Watcher for cfg.Mode; "freebsd" works only on FreeBSD and "vip" only on
// Linux (ErrNotSupported elsewhere).
func New(cfg Config) (Watcher, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cfg.Log = cfg.Log.With("component", "carp")
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	switch cfg.Mode {
	case "static", "":
		return &poller{src: staticSource{}, cfg: cfg, label: cmp.Or(cfg.Label, "static")}, nil
	case "freebsd", "vip":
		// freebsd mode may do without the VIP only when both interface and vhid are given.
		if cfg.VIP == "" && (cfg.Mode == "vip" || cfg.VHID == 0 || cfg.Interface == "") {
			return nil, fmt.Errorf("carp: %s mode: %w", cfg.Mode, ErrNoVIP)
		}
		var vip netip.Addr
		if cfg.VIP != "" {
			a, err := netip.ParseAddr(cfg.VIP)
			if err != nil {
				return nil, fmt.Errorf("carp: vip %q: %w", cfg.VIP, err)
			}
			vip = a.Unmap()
		}
		var src source
		var err error
		if cfg.Mode == "freebsd" {
			src, err = newFreeBSDSource(cfg, vip)
		} else {
			src, err = newVIPSource(cfg, vip)
		}
		if err != nil {
			return nil, err
		}
		label := cmp.Or(cfg.Label, cfg.VIP)
		if label == "" {
			label = fmt.Sprintf("%s vhid %d", cfg.Interface, cfg.VHID)
		}
		return &poller{src: src, cfg: cfg, label: label}, nil
	}
	return nil, fmt.Errorf("carp: unknown mode %q", cfg.Mode)
}

// source is one way of reading the state: read returns it now; watch signals on kick
// whenever it may have changed, until ctx ends (watch may return early on error: the
// poller then polls only, and calls watch again later).
type source interface {
	read(ctx context.Context) (State, error)
	watch(ctx context.Context, kick chan<- struct{}) error
}

// staticSource is always MASTER.
type staticSource struct{}

func (staticSource) read(context.Context) (State, error) { return Master, nil }
func (staticSource) watch(ctx context.Context, _ chan<- struct{}) error {
	<-ctx.Done()
	return nil
}

// poller turns a source into a Watcher: it reads at start, on every kick and every
// PollInterval, and sends changes. A read error counts as INIT (not serving): the proxy
// must never serve on a VIP it cannot prove it holds.
type poller struct {
	src   source
	cfg   Config
	label string
}

// watchRetry is how long the poller waits before restarting a failed event watch.
const watchRetry = 2 * time.Second

func (p *poller) Run(ctx context.Context, ch chan<- Change) error {
	log := p.cfg.Log.With("vip", p.label)
	if c, ok := p.src.(io.Closer); ok {
		defer c.Close() // the netlink socket the source keeps open between reads
	}
	kick := make(chan struct{}, 1)
	watchDone := make(chan error, 1)
	watching := false // a watch goroutine is running and will send on watchDone
	startWatch := func() {
		watching = true
		go func() { watchDone <- p.src.watch(ctx, kick) }()
	}
	startWatch()
	var rewatch <-chan time.Time
	tick := time.NewTicker(p.cfg.PollInterval)
	defer tick.Stop()

	cur, first := Init, true
	var lastErr string
	check := func(why string) {
		s, err := p.src.read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if err.Error() != lastErr {
				log.Error("cannot read the CARP state; treating it as INIT", "err", err)
				lastErr = err.Error()
			}
			p.cfg.Metrics.readError(p.label)
			s = Init
		} else if lastErr != "" {
			log.Info("CARP state readable again")
			lastErr = ""
		}
		if s == cur && !first {
			return
		}
		if !first {
			p.cfg.Metrics.transition(p.label, s)
		}
		log.Info("CARP state", "state", s, "was", cur, "first", first, "trigger", why)
		first = false
		cur = s
		p.cfg.Metrics.setState(p.label, s)
		select {
		case ch <- Change{State: s, At: time.Now()}:
		case <-ctx.Done():
		}
	}
	check("start")
	for {
		select {
		case <-ctx.Done():
			if watching {
				<-watchDone
			}
			return nil
		case <-kick:
			check("event")
		case <-tick.C:
			check("poll")
		case err := <-watchDone:
			watching = false
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("CARP event watch ended; polling only until it is back", "err", err, "retry", watchRetry)
			rewatch = time.After(watchRetry)
		case <-rewatch:
			rewatch = nil
			startWatch()
			// Events may have been missed while the watch was down.
			check("rewatch")
		}
	}
}

// kickNow signals kick without blocking (one pending kick is enough).
func kickNow(kick chan<- struct{}) {
	select {
	case kick <- struct{}{}:
	default:
	}
}

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/redis-carp-proxy/redis-carp-proxy/carp"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/gate"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy"
)

// newLogger returns the process logger for cfg.
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	return newLevelLogger(cfg, new(slog.LevelVar), w)
}

// newLevelLogger is newLogger with a level that can be changed later (SIGHUP reload).
func newLevelLogger(cfg *config.Config, level *slog.LevelVar, w io.Writer) *slog.Logger {
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// runDaemon runs the proxy until ctx ends.
func runDaemon(ctx context.Context, args []string, stderr io.Writer) error {
	fs := config.NewFlagSet("redis-carp-proxy")
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unknown subcommand %q", fs.Arg(0))
	}
	cfg, err := fs.Load()
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	log := newLevelLogger(cfg, level, stderr)
	if err := checkPrivileges(cfg, geteuid()); err != nil {
		return err
	}
	if w := configModeWarning(fs.File(), cfg, os.Getegid(), serviceGID()); w != "" {
		log.Warn(w)
	}
	redis.SetLogger(goRedisLogger{log.With("component", "go-redis")})

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// CARP configuration errors are reported before anything starts.
	cw, err := newCarp(cfg, fs.File(), log, reg)
	if err != nil {
		return err
	}
	defer cw.close()
	if hf := carp.HandoverStateFile(fs.File()); cfg.CarpMode != "static" {
		if n, err := carp.HandoverApplied(hf); err == nil && n > 0 {
			log.Warn("this host handed its VIPs over and stays BACKUP until `redis-carp-proxy handover --undo`", "state", hf)
		}
	}
	srv := proxy.NewServer(cfg, log, reg)
	// Until the gates install each VIP's state, nothing is served: /readyz (the admin
	// listener starts first) must not report a listener that is not open yet.
	starting := proxy.HostState{CARP: "INIT"}
	if cfg.CarpMode == "static" {
		starting.CARP = "static"
	}
	srv.SetHostState(func() proxy.HostState { return starting })

	startCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = srv.Start(startCtx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			srv.Close()
			return nil
		}
		log.Warn("cluster not reachable yet; serving anyway and retrying in the background", "err", err)
	}

	// An in-place restart: take the running process's listeners and clients (handover.go),
	// and hand ours to the next one. Not while this process cannot reach the cluster.
	rs := newRestart(cfg, fs.File(), srv, log)
	rs.takeOver(ctx, err == nil)
	lockReady, err := cw.awaitStateLock(ctx, rs.tookOver(), log)
	if err != nil {
		srv.Close()
		return err
	}
	if cfg.AdminListen != "" {
		adm, err := startAdmin(ctx, cfg, srv, reg, log, rs.adminListen)
		if err != nil {
			srv.Close()
			return err
		}
		defer adm.Close()
	}

	stopHUP := reloadOnHUP(fs, srv, level, log, reloadPF && cfg.PFReload, rs.spawnSuccessor)
	defer stopHUP()
	sctx, stopServe := rs.stopContext(ctx)
	defer stopServe()
	err = serveGated(sctx, cfg, cw, srv, reg, log, rs, lockReady)
	srv.Close()
	return err
}

// serveGated serves each VIP's client listeners (plain and, with tls-port, TLS) only while
// the CARP watcher of that VIP reports MASTER (always in static mode), until ctx ends: one
// watcher, one gate.Group and one proxy.Endpoint per VIP, over one proxy.Server. On
// BACKUP the proxy keeps its slot map and backend connections warm, so taking over costs
// milliseconds.
// The health monitor of carp-demote starts once lockReady is closed (awaitStateLock).
func serveGated(ctx context.Context, cfg *config.Config, cw *carpParts, srv *proxy.Server, reg prometheus.Registerer, log *slog.Logger, rs *restart,
	lockReady <-chan struct{}) error {
	var tc *tls.Config
	if cfg.TLSPort != 0 {
		var err error
		if tc, err = proxy.ClientTLSConfig(cfg); err != nil {
			return err
		}
	}
	gm := gate.NewMetrics(reg)
	glog := log.With("component", "gate")
	eps := cfg.Endpoints()
	groups := make([]*gate.Group, len(eps))
	for i, ep := range eps {
		pe := srv.Endpoint(ep.VIP)
		gm.Init(ep.VIP)
		grp := &gate.Group{VIP: ep.VIP, Gates: []*gate.Gate{{Addr: ep.Listen, VIP: ep.VIP, Server: pe,
			Drain: cfg.DrainTimeout, Log: glog, Metrics: gm}}}
		if tc != nil {
			host, _, _ := net.SplitHostPort(ep.Listen)
			grp.Gates = append(grp.Gates, &gate.Gate{Addr: net.JoinHostPort(host, strconv.Itoa(cfg.TLSPort)), VIP: ep.VIP,
				Server: pe, Drain: cfg.DrainTimeout, Log: glog.With("listener", "tls"), Listen: gate.ListenTLS(tc)})
		}
		for j, g := range grp.Gates {
			rs.attach(g, j == 1, tc, ep.VIP)
		}
		// INFO proxy and /readyz report the VIP's CARP state and whether it is served.
		pe.SetHostState(func() proxy.HostState { return proxy.HostState{CARP: grp.State(), Active: grp.Active()} })
		groups[i] = grp
		log.Info("client listener follows the CARP state", "vip", ep.VIP, "vhid", ep.VHID, "listen", ep.Listen,
			"carp_mode", cfg.CarpMode, "seeds", cfg.ClusterSeeds)
	}
	if cfg.CarpMode == "static" {
		// Always MASTER: a listen error (address in use …) is fatal at once rather than
		// retried forever.
		for _, grp := range groups {
			if err := listenFirst(ctx, grp.Gates[0]); err != nil {
				return err
			}
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go rs.serveSuccessors(ctx)
	if cw.demoter != nil {
		hm := &carp.HealthMonitor{Check: func(context.Context) error { return srv.ClusterHealthy() }, After: cfg.CarpDemoteAfter,
			Interval: time.Second, Demoter: cw.demoter, Log: log, Metrics: cw.metrics}
		done := make(chan struct{})
		go func() {
			defer close(done)
			select {
			case <-lockReady:
				hm.Run(ctx)
			case <-ctx.Done():
			}
		}()
		// The demotion is undone before the process exits.
		defer func() { cancel(); <-done }()
	}
	errs := make([]error, 2*len(groups))
	var wg sync.WaitGroup
	for i, grp := range groups {
		changes := make(chan carp.Change)
		wg.Add(2)
		go func() {
			defer wg.Done()
			if errs[2*i] = cw.watchers[i].Run(ctx, changes); errs[2*i] != nil {
				cancel() // a VIP whose state cannot be followed stops the daemon
			}
		}()
		go func() {
			defer wg.Done()
			// A VIP whose gates stop (ctx ended) ends the others too.
			defer cancel()
			errs[2*i+1] = gate.FollowMapped(ctx, grp, changes, func(c carp.Change) gate.Want {
				w := gate.Want{Active: c.State == carp.Master, At: c.At, State: c.State.String()}
				if cfg.CarpMode == "static" {
					w.State = "static"
				}
				return w
			})
		}()
	}
	<-ctx.Done()
	log.Info("shutting down", "grace", cfg.ShutdownTimeout)
	wg.Wait()
	return errors.Join(errs...)
}

// listenFirst opens g's listener now and hands it to the gate's first activation: in
// static mode a listen error is fatal at start.
func listenFirst(ctx context.Context, g *gate.Gate) error {
	listen := g.Listen // a listener inherited in a restart first (restart.inheritedListen)
	if listen == nil {
		listen = gate.Listen
	}
	ln, err := listen(ctx, g.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", g.Addr, err)
	}
	var mu sync.Mutex
	first := ln
	context.AfterFunc(ctx, func() { // never handed to the gate (stopped before the first state)
		mu.Lock()
		defer mu.Unlock()
		if first != nil {
			first.Close()
			first = nil
		}
	})
	g.Listen = func(ctx context.Context, addr string) (net.Listener, error) {
		mu.Lock()
		defer mu.Unlock()
		if first != nil {
			ln, first = first, nil
			return ln, nil
		}
		return listen(ctx, addr)
	}
	return nil
}

// carpParts are one CARP watcher per VIP (in cfg.Endpoints order) and, with carp-demote,
// the demoter (host-wide: a demoted host gives up every VIP).
type carpParts struct {
	watchers  []carp.Watcher
	demoter   carp.Demoter
	metrics   *carp.Metrics
	stateLock io.Closer // freebsd-mode carp-demote: this instance's hold on its state file
	// lockBusy: the state file was locked by another process when the daemon started (its
	// predecessor in an in-place restart, or a second instance: see awaitStateLock), and
	// lockState is the file.
	lockBusy  error
	lockState string
	lockMu    sync.Mutex // stateLock, closed
	closed    bool
}

// awaitStateLock settles a state file that was locked at start: a process that took over
// from its predecessor (an in-place restart) waits for the predecessor to undo its
// demotion and exit, in the background, before its own health monitor starts (the monitor
// then waits on the returned channel); any other process is a second instance of the same
// state file, refused as before.
func (cw *carpParts) awaitStateLock(ctx context.Context, tookOver bool, log *slog.Logger) (<-chan struct{}, error) {
	ready := make(chan struct{})
	if cw.lockBusy == nil {
		close(ready)
		return ready, nil
	}
	if !tookOver {
		return nil, cw.lockBusy
	}
	log.Info("carp-demote: the predecessor holds the demotion state; the health monitor starts once it has exited", "state", cw.lockState)
	go func() {
		l, err := carp.WaitLockState(ctx, cw.lockState, 100*time.Millisecond)
		if err != nil {
			if ctx.Err() == nil {
				log.Error("carp-demote: cannot take the demotion state over; this process never demotes the host", "err", err)
			}
			return
		}
		cw.lockMu.Lock()
		if cw.closed { // the daemon stopped meanwhile
			cw.lockMu.Unlock()
			l.Close()
			return
		}
		cw.stateLock = l
		cw.lockMu.Unlock()
		log.Info("carp-demote: demotion state taken over from the predecessor", "state", cw.lockState)
		close(ready)
	}()
	return ready, nil
}

// close releases the demotion state file.
func (cw *carpParts) close() {
	cw.lockMu.Lock()
	defer cw.lockMu.Unlock()
	if cw.stateLock != nil {
		cw.stateLock.Close()
		cw.stateLock = nil
	}
	cw.closed = true
}

// newCarp builds the watchers and the demoter of the instance that reads configFile ("":
// none): in freebsd mode its demotion is recorded in carp-health-file, by default in a
// state file of its own (carp.InstanceStateFile), which it holds locked while it runs.
func newCarp(cfg *config.Config, configFile string, log *slog.Logger, reg prometheus.Registerer) (*carpParts, error) {
	cm := carp.NewMetrics(reg)
	cw := &carpParts{metrics: cm}
	for _, ep := range cfg.Endpoints() {
		cc := carp.Config{Mode: cfg.CarpMode, Interface: cfg.CarpInterface, VHID: ep.VHID, VIP: cfg.VIP,
			PollInterval: cfg.CarpPollInterval, Label: ep.VIP, Log: log, Metrics: cm}
		if len(cfg.VIPs) > 0 {
			cc.VIP = ep.VIP
		}
		w, err := carp.New(cc)
		if err != nil {
			return nil, err
		}
		cw.watchers = append(cw.watchers, w)
	}
	if cfg.CarpDemote {
		state := cfg.CarpHealthFile
		if cfg.CarpMode == "freebsd" && state == "" {
			state = carp.InstanceStateFile(configFile)
		}
		var err error
		if cw.demoter, err = carp.NewDemoter(cfg.CarpMode, state); err != nil {
			return nil, err
		}
		if cfg.CarpMode == "freebsd" {
			cw.stateLock, err = carp.LockState(state)
			switch {
			case errors.Is(err, carp.ErrStateInUse):
				cw.lockBusy, cw.lockState = err, state // awaitStateLock
			case err != nil:
				return nil, err
			}
		}
	}
	if cfg.CarpMode != "static" && cfg.VIP != "" {
		if host, _, err := net.SplitHostPort(cfg.Listen); err == nil && host != cfg.VIP {
			log.Warn("listen is not on the VIP: clients reaching the VIP will not find the proxy", "listen", cfg.Listen, "vip", cfg.VIP)
		}
	}
	return cw, nil
}

// runCheckConfig validates a configuration file: check-config FILE.
func runCheckConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: redis-carp-proxy check-config FILE")
	}
	if _, err := config.LoadFile(args[0]); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: configuration OK\n", args[0])
	return nil
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fmt.Fprintln(stdout, "redis-carp-proxy", proxy.Version)
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
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
	redis.SetLogger(goRedisLogger{log.With("component", "go-redis")})

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// CARP configuration errors are reported before anything starts.
	cw, err := newCarp(cfg, log, reg)
	if err != nil {
		return err
	}
	srv := proxy.NewServer(cfg, log, reg)

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

	if cfg.AdminListen != "" {
		adm, err := startAdmin(ctx, cfg, srv, reg, log)
		if err != nil {
			srv.Close()
			return err
		}
		defer adm.Close()
	}

	stopHUP := reloadOnHUP(fs, srv, level, log)
	defer stopHUP()
	err = serveGated(ctx, cfg, cw, srv, reg, log)
	srv.Close()
	return err
}

// serveGated serves the client listener only while the CARP watcher reports MASTER (always
// in static mode), through internal/gate, until ctx ends. On BACKUP the proxy keeps its
// slot map and backend connections warm, so taking over costs milliseconds.
func serveGated(ctx context.Context, cfg *config.Config, cw *carpParts, srv *proxy.Server, reg prometheus.Registerer, log *slog.Logger) error {
	g := &gate.Gate{Addr: cfg.Listen, Server: srv, Drain: cfg.DrainTimeout,
		Log: log.With("component", "gate"), Metrics: gate.NewMetrics(reg)}
	// INFO proxy and /readyz report the CARP state and whether the listener is open.
	var carpState atomic.Int32 // a carp.State, from the watcher's changes
	srv.SetHostState(func() proxy.HostState {
		hs := proxy.HostState{CARP: carp.State(carpState.Load()).String(), Active: g.Active()}
		if cfg.CarpMode == "static" {
			hs.CARP = "static"
		}
		return hs
	})
	if cfg.CarpMode == "static" {
		// Always MASTER: a listen error (address in use …) is fatal at once rather than
		// retried forever.
		ln, err := gate.Listen(ctx, cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen %s: %w", cfg.Listen, err)
		}
		first := ln
		defer func() {
			if first != nil { // never handed to the gate (stopped before the first state)
				first.Close()
			}
		}()
		g.Listen = func(ctx context.Context, addr string) (net.Listener, error) {
			if first != nil {
				ln, first = first, nil
				return ln, nil
			}
			return gate.Listen(ctx, addr)
		}
	}
	log.Info("client listener follows the CARP state", "listen", cfg.Listen, "carp_mode", cfg.CarpMode, "vip", cfg.VIP, "seeds", cfg.ClusterSeeds)
	// The TLS listener (tls-port) follows the same state through a gate of its own.
	var tg *gate.Gate
	if cfg.TLSPort != 0 {
		var err error
		if tg, err = tlsGate(cfg, srv, log); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes := make(chan carp.Change)
	wants := make(chan gate.Want)
	var twants chan gate.Want
	tlsErr := make(chan error, 1)
	if tg != nil {
		twants = make(chan gate.Want)
		go func() { tlsErr <- tg.Follow(ctx, twants) }()
	} else {
		tlsErr <- nil
	}
	watchErr := make(chan error, 1)
	go func() { watchErr <- cw.watcher.Run(ctx, changes) }()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case c := <-changes:
				carpState.Store(int32(c.State))
				w := gate.Want{Active: c.State == carp.Master, At: c.At}
				for _, ch := range []chan gate.Want{wants, twants} {
					if ch == nil {
						continue
					}
					select {
					case ch <- w:
					case <-ctx.Done():
						return
					}
				}
			}
		}
	}()
	if cw.demoter != nil {
		hm := &carp.HealthMonitor{Check: clusterHealth(cfg), After: cfg.CarpDemoteAfter,
			Interval: time.Second, Demoter: cw.demoter, Log: log, Metrics: cw.metrics}
		done := make(chan struct{})
		go func() { defer close(done); hm.Run(ctx) }()
		// The demotion is undone before the process exits.
		defer func() { cancel(); <-done }()
	}
	gateErr := g.Follow(ctx, wants)
	cancel()
	if err := <-tlsErr; err != nil && gateErr == nil {
		gateErr = err
	}
	log.Info("shutting down", "grace", cfg.ShutdownTimeout)
	if err := <-watchErr; err != nil {
		return err
	}
	return gateErr
}

// carpParts are the CARP watcher and, with carp-demote, the demoter.
type carpParts struct {
	watcher carp.Watcher
	demoter carp.Demoter
	metrics *carp.Metrics
}

func newCarp(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*carpParts, error) {
	cm := carp.NewMetrics(reg)
	w, err := carp.New(carp.Config{Mode: cfg.CarpMode, Interface: cfg.CarpInterface, VHID: cfg.CarpVHID,
		VIP: cfg.VIP, PollInterval: cfg.CarpPollInterval, Log: log, Metrics: cm})
	if err != nil {
		return nil, err
	}
	cw := &carpParts{watcher: w, metrics: cm}
	if cfg.CarpDemote {
		if cw.demoter, err = carp.NewDemoter(cfg.CarpMode, cfg.CarpHealthFile); err != nil {
			return nil, err
		}
	}
	if cfg.CarpMode != "static" && cfg.VIP != "" {
		if host, _, err := net.SplitHostPort(cfg.Listen); err == nil && host != cfg.VIP {
			log.Warn("listen is not on the VIP: clients reaching the VIP will not find the proxy", "listen", cfg.Listen, "vip", cfg.VIP)
		}
	}
	return cw, nil
}

// clusterHealth returns a check that passes while some seed answers CLUSTER INFO with
// cluster_state:ok: the proxy can serve only then.
func clusterHealth(cfg *config.Config) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var errs []error
		for _, addr := range cfg.ClusterSeeds {
			c := redis.NewClient(&redis.Options{Addr: addr, Username: cfg.BackendUser, Password: cfg.BackendPassword,
				DialTimeout: cfg.BackendConnectTimeout, ReadTimeout: cfg.BackendReadTimeout, MaxRetries: -1, PoolSize: 1})
			info, err := c.ClusterInfo(ctx).Result()
			c.Close()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				return nil
			}
			if err == nil {
				err = errors.New("cluster_state is not ok")
			}
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		}
		return fmt.Errorf("no seed reports a healthy cluster: %w", errors.Join(errs...))
	}
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

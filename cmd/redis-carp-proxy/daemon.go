package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy"
)

// newLogger returns the process logger for cfg.
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
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
	log := newLogger(cfg, stderr)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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

	errc := make(chan error, 2)
	if cfg.AdminListen != "" {
		adm, err := startAdmin(ctx, cfg, srv, reg, log)
		if err != nil {
			srv.Close()
			return err
		}
		defer adm.Close()
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		srv.Close()
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	log.Info("serving", "listen", ln.Addr().String(), "seeds", cfg.ClusterSeeds)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case <-ctx.Done():
		log.Info("shutting down", "grace", cfg.ShutdownTimeout)
	case err = <-errc:
	}
	ln.Close()
	srv.Close()
	return err
}

// startAdmin serves /metrics, /healthz and /readyz on cfg.AdminListen.
func startAdmin(ctx context.Context, cfg *config.Config, srv *proxy.Server, reg *prometheus.Registry, log *slog.Logger) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ok, why := srv.Ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		io.WriteString(w, why+"\n")
	})
	if cfg.AdminPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	ln, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", cfg.AdminListen, err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener failed", "err", err)
		}
	}()
	return hs, nil
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

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
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy"
)

// maxHotKeys bounds the n parameter of /debug/hotkeys.
const maxHotKeys = 1000

// adminHandler serves the admin listener: /metrics (Prometheus), /healthz (the process
// answers), /readyz (200 only while a VIP is served and the slot map covers every slot,
// with the reason as plain text, one line per VIP; /readyz?vip=ADDR for one VIP), /debug/hotkeys (the hottest keys; never metric labels),
// /handover/hold and /handover/release for a planned handover from this host (adminhold.go)
// and, with admin-pprof yes, /debug/pprof/.
func adminHandler(cfg *config.Config, srv *proxy.Server, reg *prometheus.Registry, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ok, why := srv.Ready()
		if vip := r.URL.Query().Get("vip"); vip != "" {
			ep, found := srv.LookupEndpoint(vip)
			if !found {
				var known []string
				for _, e := range srv.Endpoints() {
					known = append(known, e.VIP())
				}
				http.Error(w, fmt.Sprintf("unknown vip %q; this proxy serves %s", vip, strings.Join(known, ", ")), http.StatusNotFound)
				return
			}
			ok, why = ep.Ready()
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		io.WriteString(w, why+"\n")
	})
	holdHandlers(mux, srv, handoverPeers(cfg))
	mux.HandleFunc("/debug/hotkeys", loopbackOnly(func(w http.ResponseWriter, r *http.Request) {
		n := 20
		if v := r.URL.Query().Get("n"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 1 || n > maxHotKeys {
				http.Error(w, fmt.Sprintf("n must be an integer from 1 to %d", maxHotKeys), http.StatusBadRequest)
				return
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		top := srv.HotKeys(n)
		if len(top) == 0 {
			io.WriteString(w, "# no hot keys sampled (hotkeys-sample-rate 0, or no keyed traffic yet)\n")
			return
		}
		io.WriteString(w, "# requests/s (estimated) key (Go-quoted)\n")
		for _, hk := range top {
			fmt.Fprintf(w, "%.1f %s\n", hk.PerSecond, strconv.Quote(hk.Key))
		}
	}))
	if cfg.AdminPprof {
		// No /debug/pprof/cmdline: the command line may hold a password (--requirepass);
		// Index answers it as an unknown profile.
		mux.HandleFunc("/debug/pprof/", loopbackOnly(pprof.Index))
		mux.HandleFunc("/debug/pprof/profile", loopbackOnly(pprof.Profile))
		mux.HandleFunc("/debug/pprof/symbol", loopbackOnly(pprof.Symbol))
		mux.HandleFunc("/debug/pprof/trace", loopbackOnly(pprof.Trace))
	}
	return mux
}

// loopbackOnly serves h to clients on a loopback address only: the hot key names (which
// may be personal data) and pprof stay on the host even when admin-listen is an address
// Prometheus reaches from elsewhere.
func loopbackOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !ap.Addr().Unmap().IsLoopback() {
			http.Error(w, "served to loopback clients only", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

// adminServer is the admin listener's HTTP server: every phase of a request has a
// deadline (a pprof profile or trace may run up to its default 30 s within WriteTimeout),
// and idle keep-alive connections are closed.
func adminServer(ctx context.Context, h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 60 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
}

// startAdmin serves adminHandler on cfg.AdminListen until the returned server is closed.
// listen opens the listener (net.Listen, or the one inherited in a restart).
func startAdmin(ctx context.Context, cfg *config.Config, srv *proxy.Server, reg *prometheus.Registry, log *slog.Logger,
	listen func(network, addr string) (net.Listener, error)) (*http.Server, error) {
	log = log.With("component", "admin")
	ln, err := listen("tcp", cfg.AdminListen)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", cfg.AdminListen, err)
	}
	hs := adminServer(ctx, adminHandler(cfg, srv, reg, log))
	log.Info("admin listener up", "addr", ln.Addr().String(), "pprof", cfg.AdminPprof)
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener failed", "addr", cfg.AdminListen, "err", err)
		}
	}()
	return hs, nil
}

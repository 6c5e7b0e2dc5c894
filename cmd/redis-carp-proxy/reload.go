package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/pfctl"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy"
)

// reloadOnHUP re-reads the configuration (file, then flags) on every SIGHUP and applies
// it to srv; a configuration that does not load keeps the running one. With pf set (the
// start configuration's pf-reload, on FreeBSD) it also replaces the pf table. It returns
// a function that stops listening for SIGHUP.
// A change that needs a restart is handed to restartFor (nil: logged only), which may
// start a successor that takes over in place.
func reloadOnHUP(fs *config.FlagSet, srv *proxy.Server, level *slog.LevelVar, log *slog.Logger, pf bool, restartFor func(keys []string) bool) func() {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
			}
			log.Info("SIGHUP: reloading configuration", "file", fs.File())
			cfg, err := fs.Load()
			if err != nil {
				srv.ReloadFailed(err)
				continue
			}
			applied, restart := srv.Reload(cfg)
			if pf {
				if n, err := reloadAllowlist(context.Background(), cmdrun.Exec{}, cfg, fs.File()); err != nil {
					log.Error("allowlist not reloaded; pf keeps the previous table", "err", err)
				} else {
					log.Info("allowlist reloaded into pf", "table", cfg.PFTable, "entries", n)
				}
			}
			for _, k := range applied {
				if k == "log-level" {
					_ = level.UnmarshalText([]byte(cfg.LogLevel))
				}
			}
			if len(restart) > 0 && (restartFor == nil || !restartFor(restart)) {
				log.Warn("changed settings need a restart to take effect", "keys", restart)
			}
		}
	}()
	return func() { signal.Stop(hup); close(done) }
}

// reloadPF reports whether SIGHUP may re-apply the pf allowlist table (pf-reload yes):
// where pf is.
var reloadPF = runtime.GOOS == "freebsd"

// reloadAllowlist validates pf-allow-file and replaces the pf table with it (pfctl -T
// replace through runner, atomic in the kernel); a file with a bad line changes nothing.
// It returns the number of entries loaded.
func reloadAllowlist(ctx context.Context, runner cmdrun.Runner, cfg *config.Config, file string) (int, error) {
	p, err := pfctl.FromConfig(cfg, file)
	if err != nil {
		return 0, err
	}
	l, err := pfctl.ReadAllowFile(p.AllowFile)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := newPF(runner, p).ReplaceTable(ctx, p.AllowFile); err != nil {
		return 0, err
	}
	return len(l.Entries()), nil
}

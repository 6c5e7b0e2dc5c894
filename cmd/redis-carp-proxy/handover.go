package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/carp"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/handover"
)

// defaultSupervisorPidfile is daemon(8)'s pid file under the rc script (no profile):
// handover --exit stops the service through it, so the supervisor does not restart the
// proxy.
const defaultSupervisorPidfile = "/var/run/redis_carp_proxy/redis_carp_proxy.pid"

const handoverUsage = "usage: redis-carp-proxy handover [--undo [--after-stop]] [--exit [--pidfile FILE]] [--on-stop] [--force] [--timeout D] [--state-file FILE] [-c FILE]"

// runHandover implements `handover`: this host gives its VIPs to a ready peer (see package
// handover), and `handover --undo`, which gives them back.
func (h hostCommands) runHandover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := subFlags("handover", stderr)
	undo := fs.Bool("undo", false, "give the VIPs back: remove the handover's demotion")
	afterStop := fs.Bool("after-stop", false, "with --undo: only undo a handover that stop made, once the local proxy's slot map is complete (the rc script's start)")
	exit := fs.Bool("exit", false, "after the handover, stop the service (SIGTERM to the daemon(8) supervisor in --pidfile) for maintenance")
	pidfile := fs.String("pidfile", defaultSupervisorPidfile, "with --exit: the supervisor's pid `file`")
	onStop := fs.Bool("on-stop", false, "the rc script's stop: hand over if handover-on-stop is yes and a peer is ready; never fails the stop")
	force := fs.Bool("force", false, "hand over without asking the peers whether one is ready")
	timeout := fs.Duration("timeout", 0, "bound of the whole handover (default: handover-timeout)")
	stateFile := fs.String("state-file", "", "`file` recording the handover's demotion (default: /var/run/ plus the configuration file name with .handover)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || (*afterStop && !*undo) || (*undo && (*exit || *onStop || *force)) {
		return errors.New(handoverUsage)
	}
	cfg, file, err := loadConfig(fs)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	if *onStop && !cfg.HandoverOnStop {
		return nil
	}
	if cfg.CarpMode == "static" || cfg.CarpMode == "" {
		if *onStop {
			return nil
		}
		return errors.New("handover: carp-mode is static: there is no CARP to move the VIPs (use carp-mode freebsd or vip)")
	}
	if *stateFile == "" {
		*stateFile = carp.HandoverStateFile(file)
	}
	if *timeout <= 0 {
		*timeout = cfg.HandoverTimeout
	}
	dem, err := carp.NewHandoverDemoter(cfg.CarpMode, *stateFile, h.runner)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	plan := &handover.Plan{Demoter: dem, Drain: cfg.DrainTimeout, Timeout: *timeout, Force: *force, Log: log,
		Hold: handover.HTTPHold(hc), Release: handover.HTTPRelease(hc)}
	for _, ep := range cfg.Endpoints() {
		plan.VIPs = append(plan.VIPs, ep.VIP)
	}
	if admin := localAdmin(cfg.AdminListen); admin != "" {
		plan.Clients = handover.HTTPClients(hc, admin)
		plan.Admin = admin
		self := handover.HTTPPeers(hc, []string{admin})
		plan.Serving = func(ctx context.Context, vip string) bool { return self(ctx, vip)[0].Active }
	}
	if peers := handoverPeers(cfg); len(peers) > 0 {
		plan.Peers = handover.HTTPPeers(hc, peers)
	}
	stopped := *stateFile + ".stopped"

	if *undo {
		if *afterStop {
			if _, err := os.Stat(stopped); errors.Is(err, iofs.ErrNotExist) {
				return nil // no handover by stop: a handover made on purpose stays
			}
			if admin := localAdmin(cfg.AdminListen); admin != "" {
				waitLocalReady(ctx, hc, admin, log)
			}
		}
		if states, err := watchOwn(ctx, cfg); err == nil {
			plan.Own = states.get
		}
		if err := plan.Undo(ctx); err != nil {
			return err
		}
		os.Remove(stopped)
		fmt.Fprintln(stdout, "handover undone: this host takes back the VIPs it is preferred for")
		return nil
	}

	states, err := watchOwn(ctx, cfg)
	if err != nil {
		return err
	}
	plan.Own = states.get
	rep, err := plan.Run(ctx)
	if *onStop {
		if err != nil {
			fmt.Fprintf(stderr, "redis-carp-proxy: not handing over before stop: %v\n", err)
			// A host whose proxy is stopped must not hold a VIP: demote all the same, so
			// that a backup takes it as soon as one can.
			if derr := dem.Demote(context.WithoutCancel(ctx)); derr != nil {
				fmt.Fprintf(stderr, "redis-carp-proxy: cannot demote before stop: %v\n", derr)
				return nil
			}
		}
		// Undone by the next start (start --undo --after-stop) once it can serve.
		if werr := os.WriteFile(stopped, nil, 0o644); werr != nil {
			fmt.Fprintf(stderr, "redis-carp-proxy: %v\n", werr)
		}
		if err == nil {
			printReport(stdout, rep)
		}
		return nil
	}
	if err != nil {
		return err
	}
	printReport(stdout, rep)
	if *exit {
		if err := os.WriteFile(stopped, nil, 0o644); err != nil {
			return err
		}
		return stopService(*pidfile, cfg.ShutdownTimeout+5*time.Second, stdout)
	}
	return nil
}

func printReport(w io.Writer, rep *handover.Report) {
	for _, v := range rep.Moved {
		by := rep.TakenBy[v]
		if by == "" {
			by = "another host"
		}
		fmt.Fprintf(w, "%s: handed over to %s (this host BACKUP after %v)\n", v, by, rep.Backup.Round(time.Millisecond))
	}
	for _, v := range rep.Moved {
		if h, ok := rep.Held[v]; ok {
			fmt.Fprintf(w, "%s: held %d clients for the move (%d waiting for an answer)\n", v, h.Clients, h.Waiting)
		}
	}
	for _, v := range rep.Kept {
		fmt.Fprintf(w, "%s: not served by this host; it stays BACKUP\n", v)
	}
	if len(rep.Moved) > 0 {
		if rep.DrainUnknown {
			fmt.Fprintf(w, "clients drained: waited drain-timeout (no admin-listen to count them); %v in all\n", rep.Drained.Round(time.Millisecond))
		} else {
			fmt.Fprintf(w, "clients drained after %v\n", rep.Drained.Round(time.Millisecond))
		}
	}
	fmt.Fprintln(w, "this host stays demoted until `redis-carp-proxy handover --undo`")
}

// handoverPeers are handover-peers, else carp-peers with this host's admin-listen port.
func handoverPeers(cfg *config.Config) []string {
	if len(cfg.HandoverPeers) > 0 {
		return cfg.HandoverPeers
	}
	_, port, err := net.SplitHostPort(cfg.AdminListen)
	if err != nil || len(cfg.CarpPeers) == 0 {
		return nil
	}
	var out []string
	for _, p := range cfg.CarpPeers {
		out = append(out, net.JoinHostPort(p, port))
	}
	return out
}

// localAdmin is the address this host's daemon's admin listener answers on ("" if none):
// a wildcard host is reached on loopback.
func localAdmin(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// waitLocalReady waits (bounded by ctx) until the local daemon's slot map covers every
// slot, so that the VIPs come back to a proxy that can serve them.
func waitLocalReady(ctx context.Context, hc *http.Client, admin string, log *slog.Logger) {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/readyz", nil)
		if resp, err := hc.Do(req); err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if strings.Contains(string(b), "covers all 16384 slots") {
				return
			}
		}
		select {
		case <-ctx.Done():
			log.Warn("handover: the local proxy's slot map is not complete yet; giving the VIPs back anyway")
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ownStates follows this host's CARP state of every VIP with the daemon's own watchers.
type ownStates struct {
	mu    sync.Mutex
	cond  chan struct{} // closed and replaced on every change
	state map[string]carp.State
}

func watchOwn(ctx context.Context, cfg *config.Config) (*ownStates, error) {
	o := &ownStates{cond: make(chan struct{}), state: map[string]carp.State{}}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, ep := range cfg.Endpoints() {
		cc := carp.Config{Mode: cfg.CarpMode, Interface: cfg.CarpInterface, VHID: ep.VHID, VIP: cfg.VIP,
			PollInterval: 50 * time.Millisecond, Label: ep.VIP, Log: quiet}
		if len(cfg.VIPs) > 0 {
			cc.VIP = ep.VIP
		}
		w, err := carp.New(cc)
		if err != nil {
			return nil, err
		}
		ch := make(chan carp.Change)
		go w.Run(ctx, ch)
		go func(vip string) {
			for {
				select {
				case <-ctx.Done():
					return
				case c := <-ch:
					o.mu.Lock()
					o.state[vip] = c.State
					close(o.cond)
					o.cond = make(chan struct{})
					o.mu.Unlock()
				}
			}
		}(ep.VIP)
	}
	return o, nil
}

// get returns the VIP's state, waiting for the watcher's first reading.
func (o *ownStates) get(ctx context.Context, vip string) (carp.State, error) {
	for {
		o.mu.Lock()
		s, ok := o.state[vip]
		c := o.cond
		o.mu.Unlock()
		if ok {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return carp.Init, fmt.Errorf("no CARP state read for %s: %w", vip, ctx.Err())
		case <-c:
		}
	}
}

// stopService sends SIGTERM to the process in pidfile (daemon(8), which stops the proxy
// and does not restart it) and waits until it is gone, at most wait.
func stopService(pidfile string, wait time.Duration, stdout io.Writer) error {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return fmt.Errorf("handover --exit: %w (use `service redis_carp_proxy stop`, or --pidfile)", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("handover --exit: %s holds no pid", pidfile)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("handover --exit: stop pid %d: %w", pid, err)
	}
	deadline := time.Now().Add(wait)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("handover --exit: pid %d still running %v after SIGTERM", pid, wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(stdout, "stopped pid %d\n", pid)
	return nil
}

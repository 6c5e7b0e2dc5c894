package carp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/atomicfile"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun"
)

// DemotionDelta is what this proxy adds to net.inet.carp.demotion while it cannot serve:
// the kernel clamps advskew + demotion to 240, so any healthy host with preemption wins.
const DemotionDelta = 240

// Demoter lowers this host's CARP priority while the proxy cannot serve, and undoes it.
// Both calls are idempotent.
type Demoter interface {
	Demote(ctx context.Context) error
	Restore(ctx context.Context) error
}

// DefaultDemotionStateFile records the demotion the proxy applied to the kernel in
// freebsd mode when carp-health-file is not set and the proxy reads the package's
// configuration file (or none). /var/run is emptied at boot (rc.d/cleanvar), as the
// kernel's counter is reset, so the record lives exactly as long as what it records.
const DefaultDemotionStateFile = "/var/run/redis-carp-proxy.demotion"

// runDir is where InstanceStateFile puts the state files (a test changes it).
var runDir = filepath.Dir(DefaultDemotionStateFile)

// InstanceStateFile is the default demotion state file of the instance that reads
// configFile: net.inet.carp.demotion is one counter per vnet (sys/netinet/ip_carp.c,
// carp_demote_adj adds to V_carp_demotion), so each instance (each rc profile, each
// configuration file) must record its own share in its own file, or one instance's
// start-up Restore undoes another's demotion. The package's configuration
// (redis-carp-proxy.conf) and no file at all keep DefaultDemotionStateFile; profile NAME's
// redis-carp-proxy-NAME.conf records in /var/run/redis-carp-proxy-NAME.demotion; any other
// FILE.conf in /var/run/redis-carp-proxy-FILE.demotion. Two files of the same name in
// different directories map to one state file: LockState refuses the second instance.
func InstanceStateFile(configFile string) string {
	if configFile == "" {
		return DefaultDemotionStateFile
	}
	stem := strings.TrimSuffix(filepath.Base(configFile), ".conf")
	if stem != "redis-carp-proxy" && !strings.HasPrefix(stem, "redis-carp-proxy-") {
		stem = "redis-carp-proxy-" + stem
	}
	return filepath.Join(runDir, stem+".demotion")
}

// LockState takes an exclusive lock on the demotion state file state (on state+".lock",
// as the state file itself is replaced by rename) for as long as the process lives, or
// until the returned Closer is closed. A second instance recording its demotion in the
// same file is refused with ErrStateInUse: both would add to and remove from the one
// kernel counter through one record, and undo each other's demotion.
func LockState(state string) (io.Closer, error) {
	f, err := os.OpenFile(state+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("carp: demotion state lock: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errLocked) {
			return nil, fmt.Errorf("carp: %s: %w (give each instance its own carp-health-file)", state, ErrStateInUse)
		}
		return nil, fmt.Errorf("carp: lock %s: %w", f.Name(), err)
	}
	return f, nil
}

// WaitLockState is LockState retried every poll while another process holds the lock,
// until ctx ends: a new process of an in-place restart takes the state file over from its
// predecessor once that one has undone its demotion and exited.
func WaitLockState(ctx context.Context, state string, poll time.Duration) (io.Closer, error) {
	for {
		c, err := LockState(state)
		if !errors.Is(err, ErrStateInUse) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (waited for the running process to release it: %w)", err, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// NewDemoter returns the demoter for a mode: freebsd adds DemotionDelta to the
// net.inet.carp.demotion sysctl (and removes exactly that later), recording what it
// applied in stateFile ("" = DefaultDemotionStateFile); vip writes stateFile ("0"
// healthy, DemotionDelta demoted) for keepalived's track_file.
func NewDemoter(mode, stateFile string) (Demoter, error) {
	switch mode {
	case "freebsd":
		if stateFile == "" {
			stateFile = DefaultDemotionStateFile
		}
		return &sysctlDemoter{run: cmdrun.Exec{}, delta: DemotionDelta, state: stateFile}, nil
	case "vip":
		if stateFile == "" {
			return nil, fmt.Errorf("carp: carp-demote in vip mode needs carp-health-file")
		}
		return &fileDemoter{path: stateFile}, nil
	}
	return nil, fmt.Errorf("carp: carp-demote is not possible in %s mode", mode)
}

// sysctlDemoter adds its delta to the kernel's shared demotion counter once and removes
// exactly that delta again: writing N to net.inet.carp.demotion adds N. The counter is
// kernel-wide and outlives the process, so what was added is recorded in a state file
// before the sysctl is written; Restore (which HealthMonitor runs at start) removes what
// the file records, so a proxy restarted after SIGKILL or a panic undoes the demotion it
// left behind instead of leaving the host demoted for good (and adding more).
type sysctlDemoter struct {
	run   cmdrun.Runner
	delta int
	state string

	mu sync.Mutex
}

func (d *sysctlDemoter) set(ctx context.Context, n int) error {
	if _, err := d.run.Run(ctx, nil, "/sbin/sysctl", "net.inet.carp.demotion="+strconv.Itoa(n)); err != nil {
		return fmt.Errorf("carp: add %d to net.inet.carp.demotion: %w", n, err)
	}
	return nil
}

// applied returns the delta the state file records (0 when it does not exist).
func (d *sysctlDemoter) applied() (int, error) {
	b, err := os.ReadFile(d.state)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("carp: demotion state: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < -DemotionDelta || n > DemotionDelta {
		return 0, fmt.Errorf("carp: demotion state %s: %q is not a demotion", d.state, strings.TrimSpace(string(b)))
	}
	return n, nil
}

func (d *sysctlDemoter) record(n int) error {
	if err := atomicfile.Write(d.state, []byte(strconv.Itoa(n)+"\n"), 0o644); err != nil {
		return fmt.Errorf("carp: record the demotion: %w", err)
	}
	return nil
}

func (d *sysctlDemoter) Demote(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, err := d.applied()
	if err != nil {
		return err
	}
	if cur == d.delta {
		return nil
	}
	if err := d.record(d.delta); err != nil {
		return err
	}
	if err := d.set(ctx, d.delta-cur); err != nil {
		if rerr := d.record(cur); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	return nil
}

// kernel reads net.inet.carp.demotion (ip_carp.c carp_demote_adj_sysctl returns
// V_carp_demotion). With -i sysctl prints nothing and succeeds when the oid does not exist
// (carp.ko not loaded): there is no counter, so nothing to remove.
func (d *sysctlDemoter) kernel(ctx context.Context) (int, error) {
	out, err := d.run.Run(ctx, nil, "/sbin/sysctl", "-i", "-n", "net.inet.carp.demotion")
	if err != nil {
		return 0, fmt.Errorf("carp: read net.inet.carp.demotion: %w", err)
	}
	v := strings.TrimSpace(string(out))
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("carp: net.inet.carp.demotion is %q, not a number", v)
	}
	return n, nil
}

// Restore removes what the state file records, but never more than the kernel's counter
// holds now: after `kldunload carp; kldload carp` (or anything else that reset it) the
// counter is 0 while the file survives, and subtracting anyway would leave the host
// promoted below everyone (kernels before the clamp in carp_demote_adj add a negative
// demotion into a u_int8 advskew).
func (d *sysctlDemoter) Restore(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, err := d.applied()
	if err != nil || cur == 0 {
		return err
	}
	now, err := d.kernel(ctx)
	if err != nil {
		return err
	}
	if n := min(cur, max(now, 0)); n > 0 {
		if err := d.set(ctx, -n); err != nil {
			return err
		}
	}
	return d.record(0)
}

// fileDemoter writes the demotion weight to a file (atomically, by rename).
type fileDemoter struct{ path string }

func (d *fileDemoter) write(n int) error {
	if err := atomicfile.Write(d.path, []byte(strconv.Itoa(n)+"\n"), 0o644); err != nil {
		return fmt.Errorf("carp: write health file %s: %w", d.path, err)
	}
	return nil
}

func (d *fileDemoter) Demote(context.Context) error  { return d.write(DemotionDelta) }
func (d *fileDemoter) Restore(context.Context) error { return d.write(0) }

// HealthMonitor demotes through Demoter once Check has failed continuously for After, and
// restores as soon as Check succeeds again, and when Run ends.
type HealthMonitor struct {
	// Check returns nil while the proxy can serve.
	Check    func(ctx context.Context) error
	After    time.Duration
	Interval time.Duration
	Demoter  Demoter
	Log      *slog.Logger
	Metrics  *Metrics
}

// Run checks every Interval until ctx ends, then restores (with a fresh 5 s context).
func (h *HealthMonitor) Run(ctx context.Context) error {
	log := h.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "carp")
	// Start from a known, undemoted state (also creates the health file).
	if err := h.Demoter.Restore(ctx); err != nil {
		log.Error("cannot reset the demotion", "err", err)
	}
	var badSince time.Time
	demoted := false
	t := time.NewTicker(h.Interval)
	defer t.Stop()
	defer func() {
		if !demoted {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := h.Demoter.Restore(rctx); err != nil {
			log.Error("cannot undo the demotion on shutdown", "err", err)
			return
		}
		h.Metrics.setDemoted(false)
		log.Info("demotion undone on shutdown")
	}()
	for {
		cctx, cancel := context.WithTimeout(ctx, h.Interval)
		err := h.Check(cctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		now := time.Now()
		switch {
		case err == nil:
			badSince = time.Time{}
			if demoted {
				if rerr := h.Demoter.Restore(ctx); rerr != nil {
					log.Error("cannot undo the demotion", "err", rerr)
				} else {
					demoted = false
					h.Metrics.setDemoted(false)
					log.Info("healthy again: demotion undone")
				}
			}
		case badSince.IsZero():
			badSince = now
			log.Warn("proxy cannot serve", "err", err, "demote_after", h.After)
		case !demoted && now.Sub(badSince) >= h.After:
			if derr := h.Demoter.Demote(ctx); derr != nil {
				log.Error("cannot demote", "err", derr)
			} else {
				demoted = true
				h.Metrics.setDemoted(true)
				log.Warn("proxy unable to serve: host demoted", "for", now.Sub(badSince), "err", err, "delta", DemotionDelta)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

package carp

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/cmdrun"
)

// HandoverStateFile is where `redis-carp-proxy handover` records the demotion it applied
// for the instance that reads configFile: InstanceStateFile with .handover in place of
// .demotion (/var/run/redis-carp-proxy.handover for the package's configuration). It is a
// file of its own, apart from the daemon's health demotion, because the two are applied
// and undone by different processes (the handover command as root, the daemon as its
// user) and must never undo each other's share: in freebsd mode each records its own
// delta of the one kernel counter; in vip mode keepalived tracks this file beside
// carp-health-file (track_file adds their weights).
func HandoverStateFile(configFile string) string {
	return strings.TrimSuffix(InstanceStateFile(configFile), ".demotion") + ".handover"
}

// NewHandoverDemoter returns the demoter of a planned handover for a mode, recording in
// stateFile (HandoverStateFile): freebsd adds DemotionDelta to net.inet.carp.demotion
// through run (the kernel sends an advertisement with the demoted skew at once, so a
// backup with net.inet.carp.preempt=1 takes over within a network round trip) and later
// removes exactly that; vip writes DemotionDelta (demoted) or 0 to stateFile for
// keepalived's track_file.
func NewHandoverDemoter(mode, stateFile string, run cmdrun.Runner) (Demoter, error) {
	if stateFile == "" {
		return nil, errors.New("carp: handover: no state file")
	}
	switch mode {
	case "freebsd":
		return &sysctlDemoter{run: run, delta: DemotionDelta, state: stateFile}, nil
	case "vip":
		return &fileDemoter{path: stateFile}, nil
	}
	return nil, fmt.Errorf("carp: handover is not possible in %s mode: nothing moves the VIP", mode)
}

// HandoverApplied returns the demotion stateFile records (0: none, or no file).
func HandoverApplied(stateFile string) (int, error) {
	b, err := os.ReadFile(stateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("carp: handover state: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > DemotionDelta {
		return 0, fmt.Errorf("carp: handover state %s: %q is not a demotion", stateFile, strings.TrimSpace(string(b)))
	}
	return n, nil
}

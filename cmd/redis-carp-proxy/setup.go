package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/hostsetup"
)

// errNotRoot is returned when setup would change the running system without root.
var errNotRoot = errors.New("setup needs root to change the running system (or use --dry-run / --root DIR)")

// checkSetupPrivileges refuses to change the running system without root.
func checkSetupPrivileges(live, dryRun bool, euid int) error {
	if live && !dryRun && euid != 0 {
		return errNotRoot
	}
	return nil
}

// runSetup implements `setup [--dry-run] [--carp] [--root DIR] [-c FILE]`.
func (h hostCommands) runSetup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := subFlags("setup", stderr)
	dryRun := fs.Bool("dry-run", false, "print the changes (diffs) and commands; change nothing")
	root := fs.String("root", "/", "write the files under this `directory` instead of / (commands are then not run)")
	writeCarp := fs.Bool("carp", false, "also write this host's CARP addresses (vips or vip, carp-host-index, carp-pass-file) to /etc/rc.conf.d/network")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("usage: redis-carp-proxy setup [--dry-run] [--carp] [--root DIR] [-c FILE]")
	}
	cfg, file, err := loadConfig(fs)
	if err != nil {
		return err
	}
	r, err := filepath.Abs(*root)
	if err != nil {
		return err
	}
	live := r == "/"
	if err := checkSetupPrivileges(live, *dryRun, os.Geteuid()); err != nil {
		return err
	}
	s := &hostsetup.Setup{
		Config: cfg, ConfigFile: file, Root: r, DryRun: *dryRun, Live: live, WriteCarp: *writeCarp,
		Runner: h.runner, Out: stdout, Log: newLogger(cfg, stderr),
	}
	return s.Run(ctx)
}

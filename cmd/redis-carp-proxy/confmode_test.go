package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
)

// TestSecretsOutOfTheConfigFile (issue 28, finding 15): a configuration file that holds
// passwords and that others can read is warned about at start; the *-file keys read the
// secrets from files others cannot read, and refuse world-readable ones.
func TestSecretsOutOfTheConfigFile(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "redis-carp-proxy.conf")
	write := func(p, s string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
	}
	write(conf, "cluster-seeds 127.0.0.1:7000\nrequirepass inline-secret\n", 0o444)
	cfg, err := config.LoadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	w := configModeWarning(conf, cfg, os.Getegid(), -1)
	if !strings.Contains(w, "holds requirepass") || !strings.Contains(w, "every user") || strings.Contains(w, "inline-secret") {
		t.Fatalf("0444 file with requirepass: %q", w)
	}
	os.Chmod(conf, 0o640) // group-readable by the daemon's own group: fine
	if w := configModeWarning(conf, cfg, os.Getegid(), -1); w != "" {
		t.Fatalf("0640, the daemon's group: %q", w)
	}
	if w := configModeWarning(conf, cfg, os.Getegid()+1, -1); !strings.Contains(w, "its group") {
		t.Fatalf("0640, another group: %q", w)
	}
	// The daemon runs as root (egid 0, say) and the file is root:redis_carp_proxy, the
	// group the package creates for the unprivileged daemon: its only member is the
	// service, so that is no warning either (finding 17); world-readable still is.
	if w := configModeWarning(conf, cfg, os.Getegid()+1, os.Getegid()); w != "" {
		t.Fatalf("0640, the service's group: %q", w)
	}
	os.Chmod(conf, 0o644)
	if w := configModeWarning(conf, cfg, os.Getegid()+1, os.Getegid()); !strings.Contains(w, "every user") {
		t.Fatalf("0644, the service's group: %q", w)
	}
	os.Chmod(conf, 0o600)
	if w := configModeWarning(conf, cfg, os.Getegid(), -1); w != "" {
		t.Fatalf("0600: %q", w)
	}

	// Secrets in files: the configuration holds none, so its mode does not matter.
	pass, users, backend := filepath.Join(dir, "requirepass"), filepath.Join(dir, "users"), filepath.Join(dir, "backend")
	write(pass, "file-secret\n", 0o600)
	write(users, "app:apppw\nro:ropw:readonly\n", 0o640)
	write(backend, "node-secret\n", 0o600)
	write(conf, "cluster-seeds 127.0.0.1:7000\nrequirepass-file "+pass+"\nusers-file "+users+"\nbackend-password-file "+backend+"\n", 0o644)
	cfg, err = config.LoadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RequirePass != "file-secret" || cfg.BackendPassword != "node-secret" || len(cfg.Users) != 2 || !cfg.Users[1].ReadOnly || cfg.Users[0].Password != "apppw" {
		t.Fatalf("secrets from files: %q %q %+v", cfg.RequirePass, cfg.BackendPassword, cfg.Users)
	}
	if w := configModeWarning(conf, cfg, os.Getegid(), -1); w != "" {
		t.Fatalf("no inline secrets, yet: %q", w)
	}
	os.Chmod(pass, 0o604)
	if _, err := config.LoadFile(conf); err == nil || !strings.Contains(err.Error(), "lets everyone read it") {
		t.Fatalf("world-readable requirepass-file: %v", err)
	}
	os.Chmod(pass, 0o600)
	write(conf, "cluster-seeds 127.0.0.1:7000\nrequirepass x\nrequirepass-file "+pass+"\n", 0o600)
	if _, err := config.LoadFile(conf); err == nil || !strings.Contains(err.Error(), "exclusive") {
		t.Fatalf("requirepass and requirepass-file: %v", err)
	}
}

package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// The secrets (requirepass, the users' passwords, backend-password) can be kept out of
// the configuration file and the command line (where ps(1) shows them): requirepass-file,
// users-file and backend-password-file name files read when the configuration is loaded
// and at every reload. A secret file must be a regular file that others cannot read (mode
// 0600, or 0640 for the service's group); the same secret given both ways is an error.

// ErrSecretFile marks a secret file that cannot be used.
var ErrSecretFile = errors.New("unusable secret file")

// ReadSecretFiles fills RequirePass, Users and BackendPassword from their *-file keys.
func (c *Config) ReadSecretFiles() error {
	if c.RequirePassFile != "" {
		if c.RequirePass != "" {
			return fmt.Errorf("requirepass and requirepass-file are exclusive")
		}
		v, err := readSecret("requirepass-file", c.RequirePassFile, true)
		if err != nil {
			return err
		}
		c.RequirePass = v
	}
	if c.BackendPasswordFile != "" {
		if c.BackendPassword != "" {
			return fmt.Errorf("backend-password and backend-password-file are exclusive")
		}
		v, err := readSecret("backend-password-file", c.BackendPasswordFile, true)
		if err != nil {
			return err
		}
		c.BackendPassword = v
	}
	if c.UsersFile != "" {
		if len(c.Users) > 0 {
			return fmt.Errorf("users and users-file are exclusive")
		}
		v, err := readSecret("users-file", c.UsersFile, false)
		if err != nil {
			return err
		}
		if err := lookup("users").set(c, v); err != nil {
			return fmt.Errorf("users-file %s: %w", c.UsersFile, err)
		}
	}
	return nil
}

// readSecret reads a secret file: one line when oneLine, without its final newline.
func readSecret(key, path string, oneLine bool) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s %s: %w: not a regular file", key, path, ErrSecretFile)
	}
	if perm := st.Mode().Perm(); perm&0o007 != 0 {
		return "", fmt.Errorf("%s %s: %w: mode %04o lets everyone read it; run chmod 600 %s", key, path, ErrSecretFile, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if v == "" {
		return "", fmt.Errorf("%s %s: %w: empty", key, path, ErrSecretFile)
	}
	if oneLine && strings.ContainsAny(v, "\r\n") {
		return "", fmt.Errorf("%s %s: %w: more than one line", key, path, ErrSecretFile)
	}
	return v, nil
}

// InlineSecrets names the secrets written in the configuration itself (not in a *-file):
// the file holding them must not be readable by others.
func (c *Config) InlineSecrets() []string {
	var out []string
	if c.RequirePass != "" && c.RequirePassFile == "" {
		out = append(out, "requirepass")
	}
	if len(c.Users) > 0 && c.UsersFile == "" {
		out = append(out, "users")
	}
	if c.BackendPassword != "" && c.BackendPasswordFile == "" {
		out = append(out, "backend-password")
	}
	return out
}

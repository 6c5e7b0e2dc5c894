// Package atomicfile replaces files atomically: the new content goes to a temporary file
// in the same directory, is synced, and is renamed over the old one, so readers (pfctl,
// rc, the loader) see either the old or the new file, never a partial one.
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with data. An existing file keeps its permission bits; a new one
// gets perm. Missing parent directories are created (0755).
func Write(path string, data []byte, perm fs.FileMode) error {
	if st, err := os.Stat(path); err == nil {
		perm = st.Mode().Perm()
	}
	return write(path, data, perm)
}

// WriteSecret is Write for a file holding a secret: the new file has mode perm whatever
// the old one had (an existing 0644 file receiving a password must not stay readable).
func WriteSecret(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm)
}

func write(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("atomicfile: write %s: %w", tmp, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("atomicfile: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("atomicfile: sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// WriteWithBackup is Write that first copies an existing, different path to
// path+backupSuffix (itself written atomically). It returns the backup's path, or "" when
// there was nothing to back up. Writing identical content is a no-op.
func WriteWithBackup(path string, data []byte, perm fs.FileMode, backupSuffix string) (backup string, changed bool, err error) {
	return writeWithBackup(path, data, perm, backupSuffix, false)
}

// WriteSecretWithBackup is WriteWithBackup for a file holding a secret: the file and its
// backup are created with mode perm whatever the old file's mode (never first written with
// the old one and narrowed afterwards).
func WriteSecretWithBackup(path string, data []byte, perm fs.FileMode, backupSuffix string) (backup string, changed bool, err error) {
	return writeWithBackup(path, data, perm, backupSuffix, true)
}

func writeWithBackup(path string, data []byte, perm fs.FileMode, backupSuffix string, secret bool) (backup string, changed bool, err error) {
	w := Write
	if secret {
		w = WriteSecret
	}
	old, err := os.ReadFile(path)
	switch {
	case err == nil:
		if string(old) == string(data) {
			return "", false, nil
		}
		st, err := os.Stat(path)
		if err != nil {
			return "", false, fmt.Errorf("atomicfile: %w", err)
		}
		backup = path + backupSuffix
		bperm := st.Mode().Perm()
		if secret {
			bperm = perm
		}
		if err := w(backup, old, bperm); err != nil {
			return "", false, err
		}
	case os.IsNotExist(err):
	default:
		return "", false, fmt.Errorf("atomicfile: %w", err)
	}
	return backup, true, w(path, data, perm)
}

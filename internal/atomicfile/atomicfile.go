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
		if err := Write(backup, old, st.Mode().Perm()); err != nil {
			return "", false, err
		}
	case os.IsNotExist(err):
	default:
		return "", false, fmt.Errorf("atomicfile: %w", err)
	}
	return backup, true, Write(path, data, perm)
}

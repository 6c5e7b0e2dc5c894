package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteKeepsModeAndBacksUp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "f.conf")
	if err := Write(p, []byte("one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	bak, changed, err := WriteWithBackup(p, []byte("one\n"), 0o644, ".bak")
	if err != nil || changed || bak != "" {
		t.Fatalf("identical rewrite: bak=%q changed=%v err=%v", bak, changed, err)
	}
	bak, changed, err = WriteWithBackup(p, []byte("two\n"), 0o644, ".bak")
	if err != nil || !changed || bak != p+".bak" {
		t.Fatalf("bak=%q changed=%v err=%v", bak, changed, err)
	}
	got, _ := os.ReadFile(p)
	old, _ := os.ReadFile(bak)
	if string(got) != "two\n" || string(old) != "one\n" {
		t.Fatalf("got %q, backup %q", got, old)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode not kept: %v", st.Mode().Perm())
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if len(ents) != 2 {
		t.Fatalf("temporary files left behind: %v", ents)
	}
}

// TestWriteSecretIgnoresOldMode (issue 28, finding 14): a secret replaces a 0644 file with
// a 0600 one, and its backup is 0600 too.
func TestWriteSecretIgnoresOldMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "network")
	if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	backup, changed, err := WriteSecretWithBackup(path, []byte("pass secret\n"), 0o600, ".bak")
	if err != nil || !changed || backup == "" {
		t.Fatalf("WriteSecretWithBackup: %q %v %v", backup, changed, err)
	}
	for _, p := range []string{path, backup} {
		if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %04o", p, st.Mode().Perm())
		}
	}
	// Write keeps an existing file's mode, as before.
	os.Chmod(path, 0o644)
	if err := Write(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("Write changed the mode to %04o", st.Mode().Perm())
	}
}

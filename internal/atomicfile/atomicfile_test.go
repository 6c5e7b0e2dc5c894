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

package textdiff

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnifiedDiff(t *testing.T) {
	a := "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n"
	b := "1\n2\nthree\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\nsixteen\n"
	got := Unified("a", "b", a, b)
	want := `--- a
+++ b
@@ -1,6 +1,6 @@
 1
 2
-3
+three
 4
 5
 6
@@ -13,3 +13,4 @@
 13
 14
 15
+sixteen
`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if d := Unified("a", "b", a, a); d != "" {
		t.Fatalf("equal inputs: %q", d)
	}
	if d := Unified("/dev/null", "b", "", "x\n"); d != "--- /dev/null\n+++ b\n@@ -0,0 +1 @@\n+x\n" {
		t.Fatalf("new file: %q", d)
	}
}

// TestUnifiedDiffApplies checks the diffs against patch(1) when it is installed: every
// hunk must apply and give exactly the new text.
func TestUnifiedDiffApplies(t *testing.T) {
	if _, err := exec.LookPath("patch"); err != nil {
		t.Skip("patch(1) not installed")
	}
	cases := [][2]string{
		{"a\nb\nc\n", "a\nc\nd\n"},
		{"x\n", "y\n"},
		{"1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "0\n1\n2\n3\n5\n6\n7\n8\n9\n10\n11\n"},
		{"keep\n", ""},
		{"port 7000\nbind 1.2.3.4\n# c\nappendonly no\n", "# header\nport 7000\nbind 1.2.3.4\n# c\nappendonly yes\n"},
	}
	for i, c := range cases {
		dir := t.TempDir()
		f := filepath.Join(dir, "f")
		os.WriteFile(f, []byte(c[0]), 0o644)
		d := Unified("f", "f", c[0], c[1])
		cmd := exec.Command("patch", "-s", "-p0", "f")
		cmd.Dir = dir
		cmd.Stdin = strings.NewReader(d)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("case %d: patch: %v\n%s\n%s", i, err, out, d)
		}
		got, _ := os.ReadFile(f)
		if string(got) != c[1] {
			t.Fatalf("case %d: patched %q, want %q\n%s", i, got, c[1], d)
		}
	}
}

func TestUnifiedDiffTwoHunks(t *testing.T) {
	old := "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nl\n"
	new := "a\nb\nc\nD\ne\nf\ng\nh\ni\nj\nl\nk\n"
	want := `--- f
+++ f
@@ -1,7 +1,7 @@
 a
 b
 c
-d
+D
 e
 f
 g
@@ -9,3 +9,4 @@
 i
 j
 l
+k
`
	if got := Unified("f", "f", old, new); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if got := Unified("/dev/null", "f", "", "x\n"); got != "--- /dev/null\n+++ f\n@@ -0,0 +1 @@\n+x\n" {
		t.Fatalf("new file diff:\n%s", got)
	}
	if Unified("f", "f", "same\n", "same\n") != "" {
		t.Fatal("equal inputs must give no diff")
	}
}

package hostsetup

import "testing"

func TestUnifiedDiff(t *testing.T) {
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
	if got := unifiedDiff("f", old, new); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if got := unifiedDiff("f", "", "x\n"); got != "--- /dev/null\n+++ f\n@@ -0,0 +1 @@\n+x\n" {
		t.Fatalf("new file diff:\n%s", got)
	}
	if unifiedDiff("f", "same\n", "same\n") != "" {
		t.Fatal("equal inputs must give no diff")
	}
}

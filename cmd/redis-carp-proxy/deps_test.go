package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// module is the module path; the layer table below names packages relative to it.
const module = "github.com/redis-carp-proxy/redis-carp-proxy"

// layers orders the module's packages from the bottom up. A package imports only
// packages of lower layers (never its own layer or a higher one), so imports run one
// way and each layer can be read without the ones above it. A package missing from the
// table fails the test: a new package is placed on purpose. A trailing "/..." names a
// directory and everything below it.
var layers = [][]string{
	// Leaves: no project imports.
	{"internal/atomicfile", "internal/cmdrun", "internal/textdiff", "internal/rcconf", "internal/config", "internal/handoff", "proxy/netpoll", "proxy/resp", "proxy/command"},
	// Test support, and the subsystems built on the leaves alone.
	{"internal/cmdrun/cmdruntest", "internal/testutil", "internal/testcluster", "internal/gate", "carp", "pfctl", "redissetup", "clusteradmin"},
	// The request path, and host set-up (which renders pf through pfctl).
	{"proxy", "internal/hostsetup", "internal/handover"},
	// Programs and the end-to-end lab.
	{"cmd/...", "tools/...", "internal/netnslab"},
}

// narrow lists the only imports outside the standard library that a package may have
// (its own module's included): the wire format stays a leaf anyone can read alone.
var narrow = map[string][]string{
	"proxy/resp":    {"github.com/tidwall/redcon"},
	"proxy/command": {},
}

// testOnly are packages for tests and tools; the daemon must not link them.
var testOnly = []string{"internal/testutil", "internal/testcluster", "internal/cmdrun/cmdruntest", "internal/netnslab"}

// pkgInfo is what go list says of one package.
type pkgInfo struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// listPackages runs go list over the module, with an optional -overlay file.
func listPackages(t *testing.T, overlay string) []pkgInfo {
	t.Helper()
	args := []string{"list", "-json=ImportPath,Imports,Deps"}
	if overlay != "" {
		args = append(args, "-overlay", overlay)
	}
	args = append(args, "./...")
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	var pkgs []pkgInfo
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkgInfo
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// layerOf returns the layer of a module-relative package path, or -1.
func layerOf(rel string) int {
	for i, l := range layers {
		for _, name := range l {
			if name == rel || (strings.HasSuffix(name, "/...") && strings.HasPrefix(rel+"/", strings.TrimSuffix(name, "..."))) {
				return i
			}
		}
	}
	return -1
}

// layerViolations checks the import graph against layers and testOnly and returns one
// line per violation.
func layerViolations(pkgs []pkgInfo) []string {
	var bad []string
	rel := func(p string) (string, bool) {
		if p == module {
			return ".", true
		}
		r, ok := strings.CutPrefix(p, module+"/")
		return r, ok
	}
	for _, p := range pkgs {
		from, _ := rel(p.ImportPath)
		lf := layerOf(from)
		if lf < 0 {
			bad = append(bad, fmt.Sprintf("%s is in no layer: add it to the layers table", from))
			continue
		}
		for _, imp := range p.Imports {
			if allowed, ok := narrow[from]; ok && strings.Contains(strings.Split(imp, "/")[0], ".") && !slices.Contains(allowed, imp) {
				bad = append(bad, fmt.Sprintf("%s imports %s: it may import only the standard library and %v", from, imp, allowed))
			}
			to, ok := rel(imp)
			if !ok {
				continue
			}
			if lt := layerOf(to); lt >= lf {
				bad = append(bad, fmt.Sprintf("%s (layer %d) imports %s (layer %d): imports must go down", from, lf, to, lt))
			}
		}
		if from == "cmd/redis-carp-proxy" {
			for _, d := range p.Deps {
				to, ok := rel(d)
				if !ok {
					continue
				}
				for _, t := range testOnly {
					if to == t {
						bad = append(bad, fmt.Sprintf("the daemon links test-only package %s", to))
					}
				}
			}
		}
	}
	sort.Strings(bad)
	return bad
}

func TestImportLayers(t *testing.T) {
	for _, line := range layerViolations(listPackages(t, "")) {
		t.Error(line)
	}
}

// TestImportLayersCatchPlantedImport plants an upward import (pfctl importing proxy,
// through go list's -overlay, without touching the tree) and checks that the layering
// test reports it: the check above can fail.
func TestImportLayersCatchPlantedImport(t *testing.T) {
	dir := t.TempDir()
	abs, err := filepath.Abs("../../pfctl/zz_planted.go")
	if err != nil {
		t.Fatal(err)
	}
	planted := filepath.Join(dir, "planted.go")
	src := "package pfctl\n\nimport _ \"" + module + "/proxy\"\n"
	if err := os.WriteFile(planted, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	ov, _ := json.Marshal(map[string]any{"Replace": map[string]string{abs: planted}})
	overlay := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlay, ov, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := layerViolations(listPackages(t, overlay))
	want := "pfctl (layer 1) imports proxy (layer 2): imports must go down"
	found := false
	for _, l := range bad {
		if l == want {
			found = true
		}
	}
	if !found {
		t.Fatalf("planted upward import not reported; got %q", bad)
	}
}

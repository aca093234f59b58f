package main

import (
	"errors"
	"go/build"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/tcpspan/tcpspan/"

// layers is the one-way layering of the main packages, bottom first: a
// package may import those below it, never one above. The commands sit on
// top of all of them, with the benchmark's programs and the end-to-end
// tests.
var layers = []string{"bpf", "conn", "exporter", "agent", "selfmetrics", "cmd"}

func layerOf(pkg string) int {
	for _, top := range []string{"bench", "e2e"} {
		if pkg == top || strings.HasPrefix(pkg, top+"/") {
			pkg = "cmd"
		}
	}
	for i, l := range layers {
		if pkg == l || strings.HasPrefix(pkg, l+"/") {
			return i
		}
	}
	return -1
}

// goPackages returns the directories of the main module that hold Go
// files, relative to root: not those of the modules under tools/.
func goPackages(t *testing.T, root string) []string {
	t.Helper()
	seen := map[string]bool{}
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil && rel != "." {
				return filepath.SkipDir // a module of its own
			}
			return nil
		}
		if dir := path.Dir(rel); strings.HasSuffix(rel, ".go") && dir != "." && !seen[dir] {
			seen[dir] = true
			dirs = append(dirs, dir)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// TestLayout checks the README's Layout section against the tree: it names
// every package of the main module (or a folder above it, but not
// internal/ as a whole). And it checks the layering the section states:
// no main package imports one above it, and the other packages (container,
// semconv, sockdiag, internal/*) import none of the main ones.
func TestLayout(t *testing.T) {
	root := filepath.Join("..", "..")
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "\n## Layout\n")
	if start < 0 {
		t.Fatal("README.md has no Layout section")
	}
	layout := readme[start+len("\n## Layout\n"):]
	if end := strings.Index(layout, "\n## "); end >= 0 {
		layout = layout[:end]
	}
	named := func(dir string) bool {
		for d := dir; d != "."; d = path.Dir(d) {
			if d == "internal" {
				return false
			}
			if strings.Contains(layout, "`"+d+"`") || strings.Contains(layout, "`"+d+"/`") {
				return true
			}
		}
		return false
	}

	for _, dir := range goPackages(t, root) {
		if !named(dir) {
			t.Errorf("README.md Layout does not name %s/", dir)
		}
		pkg, err := build.ImportDir(filepath.Join(root, dir), 0)
		if err != nil {
			var noGo *build.NoGoError
			if !errors.As(err, &noGo) {
				t.Errorf("%s: %v", dir, err)
			}
			continue
		}
		mine := layerOf(dir)
		for _, imp := range pkg.Imports {
			dep, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			switch other := layerOf(dep); {
			case other < 0:
			case mine < 0:
				t.Errorf("%s imports %s: only the layered packages (%s) may", dir, dep, strings.Join(layers, ", "))
			case other > mine:
				t.Errorf("%s imports %s, a layer above it (%s)", dir, dep, strings.Join(layers, " → "))
			}
		}
	}
}

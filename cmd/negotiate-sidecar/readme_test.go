package main

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
	"github.com/negotiate-sidecar/negotiate-sidecar/proxy"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
)

var update = flag.Bool("update", false, "rewrite the README's configuration table from the declarations")

const (
	readmePath  = "../../README.md"
	configStart = "<!-- configuration table: generated from cmd/negotiate-sidecar/config.go by its tests -->"
	configEnd   = "<!-- end of configuration table -->"
)

// TestReadmeConfigurationTable checks that the configuration table in the
// README's "### Configuration" section is the one the declarations give, so
// that no setting is undocumented and no documented setting is gone; with
// -update it rewrites the table.
func TestReadmeConfigurationTable(t *testing.T) {
	readme := readFile(t, readmePath)
	section := strings.Index(readme, "### Configuration\n")
	start, end := strings.Index(readme, configStart), strings.Index(readme, configEnd)
	if section < 0 || start < section || end < start {
		t.Fatalf("the README's ### Configuration section lacks the markers %q and %q", configStart, configEnd)
	}
	want := configStart + "\n\n" + command(false).Markdown() + "\n"
	if readme[start:end] == want {
		return
	}
	if *update {
		if err := os.WriteFile(readmePath, []byte(readme[:start]+want+readme[end:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("the configuration table of the README is out of date; run go test ./cmd/negotiate-sidecar -run TestReadmeConfigurationTable -update")
}

// TestReadmeTroubleshooting checks that the README's Troubleshooting table
// explains every outcome and every reason the binary logs: those of auth,
// rewrite and the proxy's own.
func TestReadmeTroubleshooting(t *testing.T) {
	readme := readFile(t, readmePath)
	start := strings.Index(readme, "## Troubleshooting\n")
	if start < 0 {
		t.Fatal("the README has no ## Troubleshooting section")
	}
	section := readme[start:]
	if end := strings.Index(section[1:], "\n## "); end >= 0 {
		section = section[:end+1]
	}
	var names []string
	for _, r := range auth.Reasons() {
		names = append(names, string(r))
	}
	for _, r := range rewrite.Reasons() {
		names = append(names, string(r))
	}
	names = append(append(names, proxy.Reasons()...), proxy.Outcomes()...)
	for _, name := range names {
		found := false
		for _, line := range strings.Split(section, "\n") {
			cells := strings.Split(line, "|")
			found = found || len(cells) > 2 && strings.Contains(cells[1], "`"+name+"`")
		}
		if !found {
			t.Errorf("the Troubleshooting table has no row for `%s`", name)
		}
	}
}

// TestReadmeGoVersion: the README states the Go version go.mod requires.
func TestReadmeGoVersion(t *testing.T) {
	readme := readFile(t, readmePath)
	for _, line := range strings.Split(readFile(t, "../../go.mod"), "\n") {
		if v, ok := strings.CutPrefix(line, "go "); ok {
			if !strings.Contains(readme, "Go "+v+" or later, the version `go.mod` requires") {
				t.Errorf("the README's install section does not say that go.mod requires Go %s", v)
			}
			return
		}
	}
	t.Fatal("go.mod has no go line")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestReasonListsAreComplete keeps auth.Reasons, rewrite.Reasons,
// proxy.Reasons and proxy.Outcomes, which the Troubleshooting test walks,
// complete: every string constant named Reason* or Outcome* in those
// packages' sources must be in them.
func TestReasonListsAreComplete(t *testing.T) {
	listed := map[string]bool{}
	for _, r := range auth.Reasons() {
		listed[string(r)] = true
	}
	for _, r := range rewrite.Reasons() {
		listed[string(r)] = true
	}
	for _, r := range append(proxy.Reasons(), proxy.Outcomes()...) {
		listed[r] = true
	}
	for _, dir := range []string{"../../auth", "../../rewrite", "../../proxy"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, decl := range file.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.CONST {
					continue
				}
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, name := range vs.Names {
						if !strings.HasPrefix(name.Name, "Reason") && !strings.HasPrefix(name.Name, "Outcome") || i >= len(vs.Values) {
							continue
						}
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							if v, _ := strconv.Unquote(lit.Value); !listed[v] {
								t.Errorf("%s: %s = %s is in no Reasons or Outcomes list", f, name.Name, lit.Value)
							}
						}
					}
				}
			}
		}
	}
}

package main

import (
	"flag"
	"os"
	"strings"
	"testing"
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
	data, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
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

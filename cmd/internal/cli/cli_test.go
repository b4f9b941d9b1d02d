package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type demo struct {
	Name  string
	Tags  []string
	Files []string
}

func demoCommand() *Command[demo] {
	return &Command[demo]{
		Name: "demo", EnvPrefix: "DEMO_", Config: "config",
		Settings: []Setting[demo]{
			{Flag: "config", Path: true, Value: String(func(d *demo, _ int) *string { return new(string) }, nil)},
			{Flag: "name", Key: "name", Default: "x", Value: String(func(d *demo, _ int) *string { return &d.Name }, nil)},
			{Flag: "tag", Key: "tags", Value: List(func(d *demo, _ int) *[]string { return &d.Tags }, false, nil)},
			{Flag: "file", Key: "files", Path: true, Value: List(func(d *demo, _ int) *[]string { return &d.Files }, true, nil)},
		},
	}
}

// TestLayers: defaults < file < variables < flags; a list a source gives
// replaces the lower one's, unless it adds; the file's paths are its own
// directory's.
func TestLayers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yml")
	if err := os.WriteFile(file, []byte("name: from-file\ntags: [a, b]\nfiles: [f1]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, l, err := demoCommand().Load([]string{"--config", file, "--file", "f2", "--file", "f3"}, map[string]string{"DEMO_TAG": "c, d", "DEMO_NAME": "from-env"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "from-env" || len(d.Tags) != 2 || d.Tags[0] != "c" || len(d.Files) != 3 || d.Files[0] != filepath.Join(dir, "f1") || d.Files[2] != "f3" {
		t.Errorf("got %+v", d)
	}
	if o := l.Origin("name", 0); o.String() != `DEMO_NAME="from-env"` {
		t.Errorf("origin of name: %s", o)
	}
}

func TestDidYouMean(t *testing.T) {
	known := []string{"audiences", "issuer", "jwks_urls"}
	for name, want := range map[string]string{
		"audience": " (did you mean audiences?)",
		"isuser":   " (did you mean issuer?)",
		"jwks_url": " (did you mean jwks_urls?)",
		"color":    "",
	} {
		if got := didYouMean(name, known); got != want {
			t.Errorf("didYouMean(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	c := demoCommand()
	for args, want := range map[string]string{
		"--name":           "flag --name needs a value; demo --help says which",
		"--nme":            "unknown flag --nme (did you mean --name?); demo --help lists the flags",
		"--name a -name=b": "flag --name is given twice; give it once",
	} {
		_, _, err := c.Load(strings.Fields(args), nil)
		var ue *UsageError
		if !errors.As(err, &ue) || err.Error() != want {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
	if _, _, err := c.Load(nil, map[string]string{"DEMO_NAMES": "x"}); err == nil || err.Error() != "unknown variable DEMO_NAMES (did you mean DEMO_NAME?); every variable DEMO_* stands for a flag (demo --help)" {
		t.Errorf("unknown variable: %v", err)
	}
}

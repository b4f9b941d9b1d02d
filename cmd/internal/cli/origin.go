package cli

import "fmt"

// Source is where a value came from.
type Source int

// The sources, lowest first.
const (
	Default Source = iota
	File
	Env
	Flag
)

// Origin says where a setting got its value, so that a message about the
// value names it as the user gave it.
type Origin struct {
	Source Source
	Name   string // the flag with its dashes, the variable, or the file key
	Text   string // the value as given
	Path   string // the configuration file, for File
	Line   int    // the line in it, for File
}

// String names the value as given: --flag="text", VARIABLE="text",
// or file line N: key "text".
func (o Origin) String() string { return o.describe([]string{o.Text}) }

// describe is String, showing the value as now where it has no text of its
// own (a default).
func (o Origin) describe(now []string) string {
	switch o.Source {
	case Flag, Env:
		return fmt.Sprintf("%s=%q", o.Name, o.Text)
	case File:
		return fmt.Sprintf("%s line %d: %s %q", o.Path, o.Line, o.Name, o.Text)
	}
	switch {
	case len(now) == 0 || len(now) == 1 && now[0] == "":
		return o.Name
	case len(now) == 1:
		return fmt.Sprintf("%s %q", o.Name, now[0])
	}
	return fmt.Sprintf("%s %q", o.Name, now)
}

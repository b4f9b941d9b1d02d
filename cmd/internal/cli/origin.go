package cli

import (
	"fmt"
	"regexp"
)

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
		return fmt.Sprintf("%s=%q", o.Name, masked(o.Text))
	case File:
		return fmt.Sprintf("%s line %d: %s %q", o.Path, o.Line, o.Name, masked(o.Text))
	}
	switch {
	case len(now) == 0 || len(now) == 1 && now[0] == "":
		return o.Name
	case len(now) == 1:
		return fmt.Sprintf("%s %q", o.Name, masked(now[0]))
	}
	m := make([]string, len(now))
	for i, v := range now {
		m[i] = masked(v)
	}
	return fmt.Sprintf("%s %q", o.Name, m)
}

// secretParts match the secret parts a quoted setting may hold: a URL's user
// information and its query (a storage SAS signature), and the AccessKey or
// ClientSecret of a connection string. The first group is kept, the second
// replaced.
var secretParts = []*regexp.Regexp{
	regexp.MustCompile(`(://)([^/@\s]*)@`),
	regexp.MustCompile(`(?i)((?:accesskey|clientsecret)\s*=\s*)([^;\s]*)`),
	regexp.MustCompile(`(://[^?#\s]*\?)([^#\s]*)`), // a URL's query, such as a SAS signature
}

// masked is v with its secrets replaced, for messages that quote a value.
func masked(v string) string {
	for _, re := range secretParts {
		v = re.ReplaceAllStringFunc(v, func(m string) string {
			sub := re.FindStringSubmatchIndex(m)
			return m[:sub[3]] + "REDACTED" + m[sub[5]:]
		})
	}
	return v
}

package cli

import (
	"fmt"
	"io"
	"strings"
)

// Help prints the usage and every flag: its help, default, variable and
// file key.
func (c *Command[S]) Help(w io.Writer) {
	fmt.Fprintf(w, "%s\n", strings.TrimRight(c.Usage, "\n"))
	if c.EnvPrefix != "" {
		fmt.Fprintf(w, "\nEvery flag can also be set as %s<FLAG> (--jwks-url: %s).\n", c.EnvPrefix, c.EnvName("jwks-url"))
	}
	fmt.Fprintf(w, "\nFlags:\n")
	for _, st := range c.Settings {
		if st.Flag == "" {
			continue
		}
		dash := "--"
		if len(st.Flag) == 1 {
			dash = "-" // as written in usage lines: -v
		}
		fmt.Fprintf(w, "  %s%s%s\n", dash, st.Flag, placeholder(st))
		var notes []string
		switch d := defaultText(st); {
		case strings.HasPrefix(d, "(") && strings.HasSuffix(d, ")"):
			notes = append(notes, strings.Trim(d, "()")) // "(required)"
		case d != "":
			notes = append(notes, "default "+d)
		}
		if c.EnvPrefix != "" && !st.NoEnv {
			notes = append(notes, c.EnvName(st.Flag))
		}
		if st.Key != "" {
			notes = append(notes, "file: "+st.Key)
		}
		if len(notes) > 0 {
			fmt.Fprintf(w, "        (%s)\n", strings.Join(notes, "; "))
		}
		for _, line := range wrap(plain(st.Help), 72) {
			fmt.Fprintf(w, "        %s\n", line)
		}
	}
	fmt.Fprintf(w, "  -h, --help\n        Print this help.\n")
}

// Markdown returns the settings as the rows of a Markdown table: flag, file
// key, default and meaning.
func (c *Command[S]) Markdown() string {
	var b strings.Builder
	b.WriteString("| Flag | File key | Default | Meaning |\n|---|---|---|---|\n")
	code := func(s string) string {
		if s == "" {
			return ""
		}
		return "`" + s + "`"
	}
	for _, st := range c.Settings {
		flag := ""
		if st.Flag != "" {
			flag = code(strings.TrimRight("--"+st.Flag+" "+st.Meta, " "))
		}
		def := st.DefaultDoc
		if def == "" {
			def = code(st.Default)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", flag, code(st.Key), def, strings.ReplaceAll(st.Help, "|", `\|`))
	}
	return b.String()
}

func placeholder[S any](st Setting[S]) string {
	switch {
	case st.Meta != "":
		return " " + st.Meta
	case st.Value.boolean:
		return ""
	}
	return " " + st.Value.typ
}

func defaultText[S any](st Setting[S]) string {
	if st.DefaultDoc != "" {
		return plain(st.DefaultDoc)
	}
	return st.Default
}

// plain drops Markdown code spans' backquotes, for the terminal.
func plain(md string) string { return strings.ReplaceAll(md, "`", "") }

// wrap breaks text into lines of at most width bytes, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return append(lines, line)
}

package cli

import (
	"fmt"
	"strings"
)

// parseArgs reads the command line: --flag value, --flag=value, a single
// dash alike. A flag that does not exist, a value missing, a flag that
// takes one value given twice, and an argument that is not a flag are
// usage errors; -h and --help ask for help. The items of a repeated flag
// are gathered into one assignment.
func (c *Command[S]) parseArgs(args []string) ([]assignment[S], error) {
	var out []assignment[S]
	index := map[*Setting[S]]int{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if i+1 < len(args) {
				return nil, c.unexpected(args[i+1])
			}
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			return nil, c.unexpected(a)
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "h" || name == "help" {
			return nil, ErrHelp
		}
		st := c.byFlag(name)
		if st == nil {
			written, _, _ := strings.Cut(a, "=")
			return nil, &UsageError{fmt.Sprintf("unknown flag %s%s; %s --help lists the flags", written, didYouMean("--"+name, c.flagNames()), c.Name)}
		}
		switch {
		case hasVal:
		case st.Value.boolean:
			val = "true"
		case i+1 < len(args):
			i++
			val = args[i]
		default:
			return nil, &UsageError{fmt.Sprintf("flag --%s needs a value; %s --help says which", name, c.Name)}
		}
		items := []string{val}
		if st.Value.splitFlag {
			items = splitList(val)
		}
		if j, seen := index[st]; seen {
			if !st.Value.repeat {
				return nil, &UsageError{fmt.Sprintf("flag --%s is given twice; give it once", name)}
			}
			out[j].items = append(out[j].items, items...)
			out[j].origin.Text += "," + val
			continue
		}
		index[st] = len(out)
		out = append(out, assignment[S]{st: st, items: items, origin: Origin{Source: Flag, Name: "--" + name, Text: val}})
	}
	return out, nil
}

func (c *Command[S]) unexpected(arg string) error {
	hint := c.ArgHint
	if hint == "" {
		hint = c.Name + " takes no arguments, and flags start with --"
	}
	return &UsageError{fmt.Sprintf("unexpected argument %q; %s", arg, hint)}
}

func (c *Command[S]) byFlag(name string) *Setting[S] {
	for j := range c.Settings {
		if st := &c.Settings[j]; st.Flag != "" && st.Flag == name {
			return st
		}
	}
	return nil
}

func (c *Command[S]) flagNames() []string {
	var names []string
	for _, st := range c.Settings {
		if st.Flag != "" {
			names = append(names, "--"+st.Flag)
		}
	}
	return append(names, "--help")
}

// didYouMean suggests the known name closest to name, if one is close
// enough to be a misspelling of it: " (did you mean x?)", or "".
func didYouMean(name string, known []string) string {
	best, bestDist := "", 0
	for _, k := range known {
		d := editDistance(strings.ToLower(name), strings.ToLower(k))
		if best == "" || d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" || bestDist > max(2, len(name)/4) {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

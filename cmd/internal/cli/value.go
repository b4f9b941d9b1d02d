// Package cli reads a command's settings from one declaration per setting:
// its flag, environment variable, configuration file key, default, parser,
// range and help. The command line, the environment and a YAML file are
// layered over the defaults (defaults, then the file, then the environment,
// then flags), and --help and the README's table of settings are printed
// from the same declarations. Every message about a value names it as the
// user gave it: a flag, a variable, or a file key and line.
package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Value binds a setting to a field of the settings S, and says how its text
// is read and checked. Make one with String, Int, Duration, Bool, List or
// Comma. The int given to bindings is the element of the setting's group
// (see Setting.Group); 0 for settings outside a group.
type Value[S any] struct {
	typ       string // the placeholder of its value in --help: string, int, duration
	boolean   bool   // a flag that takes no value
	multi     bool   // holds a list
	repeat    bool   // the flag may be given again, each time adding an item
	splitFlag bool   // the flag's text is a comma-separated list
	splitEnv  bool   // the variable's text is a comma-separated list
	add       bool   // each source adds to the list rather than replacing it
	set       func(s *S, i int, items []string) error
	get       func(s *S, i int) []string
	check     func(s *S, i int) error
}

// String is a text setting; check, if set, judges the final value.
func String[S any](bind func(*S, int) *string, check func(string) error) Value[S] {
	return Value[S]{
		typ:   "string",
		set:   func(s *S, i int, items []string) error { *bind(s, i) = items[0]; return nil },
		get:   func(s *S, i int) []string { return []string{*bind(s, i)} },
		check: checkOf(bind, check),
	}
}

// Int is a whole number; check, if set, judges the final value.
func Int[S any, N ~int | ~int64](bind func(*S, int) *N, check func(N) error) Value[S] {
	return Value[S]{
		typ: "int",
		set: func(s *S, i int, items []string) error {
			n, err := strconv.ParseInt(strings.TrimSpace(items[0]), 10, 64)
			if err != nil {
				return errors.New("not a whole number; use digits only, such as 4096")
			}
			*bind(s, i) = N(n)
			return nil
		},
		get:   func(s *S, i int) []string { return []string{strconv.FormatInt(int64(*bind(s, i)), 10)} },
		check: checkOf(bind, check),
	}
}

// Between accepts numbers, or durations, from lo to hi.
func Between[N ~int | ~int64](lo, hi N) func(N) error {
	return func(n N) error {
		if n < lo || n > hi {
			return fmt.Errorf("choose from %v to %v", lo, hi)
		}
		return nil
	}
}

// AtLeast accepts numbers, or durations, of lo or more.
func AtLeast[N ~int | ~int64](lo N) func(N) error {
	return func(n N) error {
		if n < lo {
			return fmt.Errorf("choose at least %v", lo)
		}
		return nil
	}
}

// checkOf applies check, if any, to the bound field.
func checkOf[S, T any](bind func(*S, int) *T, check func(T) error) func(*S, int) error {
	return func(s *S, i int) error {
		if check == nil {
			return nil
		}
		return check(*bind(s, i))
	}
}

// Duration is a duration such as 30s; check, if set, judges the final value.
func Duration[S any](bind func(*S, int) *time.Duration, check func(time.Duration) error) Value[S] {
	return Value[S]{
		typ: "duration",
		set: func(s *S, i int, items []string) error {
			d, err := time.ParseDuration(strings.TrimSpace(items[0]))
			if err != nil {
				return errors.New("not a duration; use a duration such as 30s, 5m or 1h")
			}
			*bind(s, i) = d
			return nil
		},
		get:   func(s *S, i int) []string { return []string{bind(s, i).String()} },
		check: checkOf(bind, check),
	}
}

// Bool is true or false; its flag alone means true.
func Bool[S any](bind func(*S, int) *bool) Value[S] {
	return Value[S]{
		boolean: true,
		set: func(s *S, i int, items []string) error {
			b, err := strconv.ParseBool(strings.TrimSpace(items[0]))
			if err != nil {
				return errors.New("not a boolean; use true or false")
			}
			*bind(s, i) = b
			return nil
		},
		get:   func(s *S, i int) []string { return []string{strconv.FormatBool(*bind(s, i))} },
		check: checkOf[S, bool](bind, nil),
	}
}

// List is a list whose flag may be given again, each time adding an item;
// its variable holds a comma-separated list and its file key a YAML list.
// The values of a source replace those of the sources below it, unless add
// is set: then every source adds to the list. check, if set, judges the
// final list.
func List[S any](bind func(*S, int) *[]string, add bool, check func([]string) error) Value[S] {
	v := comma(bind, check)
	v.repeat, v.splitFlag, v.add = true, false, add
	return v
}

// Comma is a list given once: its flag and variable take a comma-separated
// list, its file key a YAML list; check, if set, judges the final list.
func Comma[S any](bind func(*S, int) *[]string, check func([]string) error) Value[S] {
	return comma(bind, check)
}

// Item adds one item to a list: its flag is given once and its variable
// holds one item, both added to the file's list (a YAML list).
func Item[S any](bind func(*S, int) *[]string) Value[S] {
	v := comma(bind, nil)
	v.splitFlag, v.splitEnv, v.add = false, false, true
	return v
}

func comma[S any](bind func(*S, int) *[]string, check func([]string) error) Value[S] {
	return Value[S]{
		typ:       "list",
		multi:     true,
		splitFlag: true,
		splitEnv:  true,
		set: func(s *S, i int, items []string) error {
			*bind(s, i) = append([]string(nil), items...)
			return nil
		},
		get:   func(s *S, i int) []string { return *bind(s, i) },
		check: checkOf(bind, check),
	}
}

// apply stores the items of one source. A list that does not add is
// replaced; one that adds keeps what lower sources gave.
func (v Value[S]) apply(s *S, i int, items []string) error {
	if v.multi && v.add {
		items = append(append([]string(nil), v.get(s, i)...), items...)
	}
	return v.set(s, i, items)
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

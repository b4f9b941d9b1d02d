package cli

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Setting declares one setting. Its environment variable is the command's
// EnvPrefix followed by the flag in upper snake case (--jwks-url:
// NEGOTIATE_SIDECAR_JWKS_URL).
type Setting[S any] struct {
	Flag string // without dashes; "" when only the file sets it
	// Key is the configuration file's key, sections joined by dots
	// ("tokens.max_token_length"); a group's keys start with the group and
	// "[]." ("providers[].issuer"). "" when no file key sets it.
	Key  string
	Meta string // the value's placeholder in --help and the README (URL, PATH)
	Help string // one paragraph; Markdown code spans are shown plain in --help
	// Default is the default as text, read like any other value.
	Default string
	// DefaultDoc is the default as --help and the README show it, where
	// Default alone would not say it (Markdown).
	DefaultDoc string
	Group      string // the group whose every element has the setting
	NoEnv      bool   // no environment variable sets it
	Path       bool   // a path, relative to the configuration file's directory when the file sets it
	Watch      bool   // a file whose change reloads the configuration (see Command.Watched)
	Value      Value[S]
}

// id names the setting in origins: its key, else its flag.
func (st *Setting[S]) id() string {
	if st.Key != "" {
		return st.Key
	}
	return "--" + st.Flag
}

// Group is a list of elements in the settings, such as identity providers,
// each with the settings whose Group names it. The file lists the elements;
// flags and variables set the settings of the only one.
type Group[S any] struct {
	Add func(s *S) int // appends an empty element and returns its index
	Len func(s *S) int
	// Shared is the problem when flags or variables (named in names) set
	// settings of the group but the file lists n > 1 elements.
	Shared func(names []string, n int) error
}

// Command is a command's settings and how --help presents them.
type Command[S any] struct {
	Name      string // as typed: "negotiate-sidecar check"
	Usage     string // printed by --help above the flags
	EnvPrefix string // "" reads no variables
	Config    string // the flag naming the configuration file; "" for none
	// ArgHint is said after an argument that is not a flag.
	ArgHint  string
	Settings []Setting[S]
	Groups   map[string]Group[S]
}

// ErrHelp is returned by Load for -h and --help: print Help and succeed.
var ErrHelp = errors.New("help requested")

// UsageError is a command line that does not parse. Its message is one line.
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

// unusableError is a configuration file that cannot be read at all: the
// settings it would have given are unknown, so no other problem is reported.
type unusableError struct{ error }

func (e unusableError) Unwrap() error { return e.error }

// assignment is the items one source gives a setting.
type assignment[S any] struct {
	st     *Setting[S]
	items  []string
	origin Origin
}

// Loaded tells where each value came from.
type Loaded struct {
	File string // the configuration file read, if any
	// Unusable is set when the file could not be read or parsed at all:
	// the settings it would have given are unknown, so checking the others
	// would only report false problems.
	Unusable bool
	origins  map[string]Origin
}

// Origin tells where the setting of key (or "--flag" for a setting with no
// key) of group element i (0 outside groups) got its value.
func (l *Loaded) Origin(key string, i int) Origin {
	if o, ok := l.origins[originKey(key, i)]; ok {
		return o
	}
	return Origin{Source: Default, Name: strings.Replace(key, "[]", fmt.Sprintf("[%d]", i), 1)}
}

func (l *Loaded) set(st interface{ id() string }, i int, o Origin) {
	l.origins[originKey(st.id(), i)] = o
}

func originKey(id string, i int) string { return fmt.Sprintf("%s#%d", id, i) }

// Load reads the settings: defaults, then the configuration file, then the
// variables, then the flags. It returns ErrHelp, a *UsageError, or every
// problem with a value at once.
func (c *Command[S]) Load(args []string, env map[string]string) (S, *Loaded, error) {
	var s S
	l := &Loaded{origins: map[string]Origin{}}
	flags, err := c.parseArgs(args)
	if err != nil {
		return s, l, err
	}
	vars, problems := c.readEnv(env)
	for i := range c.Settings {
		if st := &c.Settings[i]; st.Group == "" && st.Default != "" {
			_ = st.Value.set(&s, 0, defaultItems(st))
		}
	}
	if path := c.configPath(vars, flags); path != "" {
		l.File = path
		if err := c.readFile(&s, l, path); err != nil {
			var u unusableError
			if errors.As(err, &u) {
				l.Unusable = true
				return s, l, errors.Join(append(problems, u.error)...)
			}
			problems = append(problems, err)
		}
	}
	problems = append(problems, c.apply(&s, l, vars)...)
	problems = append(problems, c.apply(&s, l, flags)...)
	return s, l, errors.Join(problems...)
}

func defaultItems[S any](st *Setting[S]) []string {
	if st.Value.multi {
		return splitList(st.Default)
	}
	return []string{st.Default}
}

// configPath is the configuration file the flags, else the variables, name.
func (c *Command[S]) configPath(vars, flags []assignment[S]) string {
	path := ""
	for _, a := range append(vars, flags...) {
		if c.Config != "" && a.st.Flag == c.Config {
			path = a.items[0]
		}
	}
	return path
}

// apply stores one source's assignments. Those of a group go to its only
// element, made if there is none.
func (c *Command[S]) apply(s *S, l *Loaded, as []assignment[S]) []error {
	var problems []error
	byGroup := map[string][]assignment[S]{}
	for _, a := range as {
		if a.st.Group != "" {
			byGroup[a.st.Group] = append(byGroup[a.st.Group], a)
			continue
		}
		problems = append(problems, c.store(s, l, a, 0)...)
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for g := range byGroup {
			if !yield(g) {
				return
			}
		}
	}) {
		g, ga := c.Groups[name], byGroup[name]
		switch n := g.Len(s); {
		case n > 1:
			var names []string
			for _, a := range ga {
				names = append(names, a.origin.Name)
			}
			problems = append(problems, g.Shared(names, n))
			continue
		case n == 0:
			c.addElement(s, name)
		}
		for _, a := range ga {
			problems = append(problems, c.store(s, l, a, 0)...)
		}
	}
	return problems
}

func (c *Command[S]) store(s *S, l *Loaded, a assignment[S], i int) []error {
	if err := a.st.Value.apply(s, i, a.items); err != nil {
		return []error{fmt.Errorf("%s: %w", a.origin, err)}
	}
	l.set(a.st, i, a.origin)
	return nil
}

// addElement appends an element to the group, with its defaults.
func (c *Command[S]) addElement(s *S, group string) int {
	i := c.Groups[group].Add(s)
	for j := range c.Settings {
		if st := &c.Settings[j]; st.Group == group && st.Default != "" {
			_ = st.Value.set(s, i, defaultItems(st))
		}
	}
	return i
}

// Validate checks every setting's final value with its Value's check, and
// names a bad one as the user gave it.
func (c *Command[S]) Validate(s *S, l *Loaded) []error {
	var problems []error
	for j := range c.Settings {
		st := &c.Settings[j]
		n := 1
		if st.Group != "" {
			n = c.Groups[st.Group].Len(s)
		}
		for i := range n {
			if err := st.Value.check(s, i); err != nil {
				problems = append(problems, fmt.Errorf("%s: %w", l.Origin(st.id(), i).describe(st.Value.get(s, i)), err))
			}
		}
	}
	return problems
}

// Watched returns the files whose change should reload the configuration:
// the values of the settings marked Watch.
func (c *Command[S]) Watched(s *S) []string {
	var files []string
	for j := range c.Settings {
		if st := &c.Settings[j]; st.Watch && st.Group == "" {
			for _, f := range st.Value.get(s, 0) {
				if f != "" {
					files = append(files, f)
				}
			}
		}
	}
	return files
}

// EnvName is the variable of a flag.
func (c *Command[S]) EnvName(flag string) string {
	return c.EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// readEnv reads the variables with the command's prefix. One that names no
// setting is a problem: a misspelt variable is a setting the user believes
// in and does not have.
func (c *Command[S]) readEnv(env map[string]string) ([]assignment[S], []error) {
	if c.EnvPrefix == "" {
		return nil, nil
	}
	var names, known []string
	byName := map[string]*Setting[S]{}
	for j := range c.Settings {
		if st := &c.Settings[j]; st.Flag != "" && !st.NoEnv {
			byName[c.EnvName(st.Flag)] = st
			known = append(known, c.EnvName(st.Flag))
		}
	}
	for name := range env {
		if strings.HasPrefix(name, c.EnvPrefix) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var out []assignment[S]
	var problems []error
	for _, name := range names {
		st, val := byName[name], env[name]
		switch {
		case st == nil:
			problems = append(problems, fmt.Errorf("unknown variable %s%s; every variable %s* stands for a flag (%s --help)", name, didYouMean(name, known), c.EnvPrefix, c.Name))
		case val != "":
			items := []string{val}
			if st.Value.splitEnv {
				items = splitList(val)
			}
			out = append(out, assignment[S]{st: st, items: items, origin: Origin{Source: Env, Name: name, Text: val}})
		}
	}
	return out, problems
}

package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// readFile reads the configuration file strictly: an unknown key is an
// error naming the key and its line, because a misspelt key that is
// silently ignored is a setting the user believes in and does not have.
// Relative paths in it are relative to its directory, so that a
// configuration and the files it names can move together.
func (c *Command[S]) readFile(s *S, l *Loaded, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return unusableError{fmt.Errorf("--%s: %w", c.Config, err)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file sets nothing
		}
		return unusableError{fmt.Errorf("%s: %w", path, err)}
	}
	var extra yaml.Node
	if dec.Decode(&extra) != io.EOF {
		return unusableError{fmt.Errorf("%s: holds more than one YAML document; keep the configuration in one", path)}
	}
	root := doc.Content[0]
	switch {
	case root.Kind == yaml.ScalarNode && root.Tag == "!!null":
		return nil
	case root.Kind != yaml.MappingNode:
		return unusableError{fmt.Errorf("%s line %d: the configuration must be a mapping of keys to values", path, root.Line)}
	}
	if err := duplicateKey(root, path); err != nil {
		return unusableError{err}
	}
	f := &fileReader[S]{c: c, s: s, l: l, path: path}
	return errors.Join(f.mapping(root, "", "", 0)...)
}

// duplicateKey reports the first key given twice in one mapping: YAML
// parsers disagree on which value wins.
func duplicateKey(n *yaml.Node, path string) error {
	if n.Kind == yaml.MappingNode {
		seen := map[string]int{}
		for j := 0; j+1 < len(n.Content); j += 2 {
			k := n.Content[j]
			if line, dup := seen[k.Value]; dup {
				return fmt.Errorf("%s line %d: mapping key %q already defined at line %d", path, k.Line, k.Value, line)
			}
			seen[k.Value] = k.Line
		}
	}
	for _, child := range n.Content {
		if err := duplicateKey(child, path); err != nil {
			return err
		}
	}
	return nil
}

type fileReader[S any] struct {
	c    *Command[S]
	s    *S
	l    *Loaded
	path string
}

// mapping reads the keys of m, whose keys start with prefix; i is the
// element of group they belong to.
func (f *fileReader[S]) mapping(m *yaml.Node, prefix, group string, i int) []error {
	var problems []error
	for j := 0; j+1 < len(m.Content); j += 2 {
		k, v := m.Content[j], m.Content[j+1]
		key := prefix + k.Value
		_, isGroup := f.c.Groups[key]
		switch st := f.c.byKey(key); {
		case st != nil:
			problems = append(problems, f.value(st, k, v, i)...)
		case isGroup && v.Kind == yaml.SequenceNode:
			for _, el := range v.Content {
				if el.Kind != yaml.MappingNode {
					problems = append(problems, fmt.Errorf("%s line %d: each of %s is a mapping of keys to values", f.path, el.Line, k.Value))
					continue
				}
				problems = append(problems, f.mapping(el, key+"[].", key, f.c.addElement(f.s, key))...)
			}
		case !isGroup && f.c.isSection(key) && v.Kind == yaml.MappingNode:
			problems = append(problems, f.mapping(v, key+".", group, i)...)
		case isGroup || f.c.isSection(key):
			problems = append(problems, fmt.Errorf("%s line %d: %s must be a %s", f.path, k.Line, k.Value, map[bool]string{true: "list of mappings", false: "mapping of keys to values"}[isGroup]))
		default:
			problems = append(problems, fmt.Errorf("%s line %d: unknown key %q%s; see the configuration reference in the README for the keys there are", f.path, k.Line, k.Value, didYouMean(k.Value, f.c.keysUnder(prefix))))
		}
	}
	return problems
}

// value reads the value of one setting.
func (f *fileReader[S]) value(st *Setting[S], k, v *yaml.Node, i int) []error {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return nil // as if absent
	}
	o := Origin{Source: File, Name: k.Value, Path: f.path, Line: k.Line, Text: v.Value}
	var items []string
	switch {
	case st.Value.multi && v.Kind == yaml.SequenceNode:
		for _, item := range v.Content {
			if item.Kind != yaml.ScalarNode {
				return []error{fmt.Errorf("%s line %d: %s: each item is a single value", f.path, item.Line, k.Value)}
			}
			items = append(items, item.Value)
		}
		o.Text = strings.Join(items, ",")
	case st.Value.multi:
		return []error{fmt.Errorf("%s: a list is expected, such as [a, b]", o)}
	case v.Kind != yaml.ScalarNode:
		return []error{fmt.Errorf("%s line %d: %s: a single value is expected", f.path, k.Line, k.Value)}
	default:
		items = []string{v.Value}
	}
	if st.Path {
		for n, p := range items {
			if p != "" && !filepath.IsAbs(p) {
				items[n] = filepath.Join(filepath.Dir(f.path), p)
			}
		}
	}
	if err := st.Value.set(f.s, i, items); err != nil {
		return []error{fmt.Errorf("%s: %w", o, err)}
	}
	f.l.set(st, i, o)
	return nil
}

func (c *Command[S]) byKey(key string) *Setting[S] {
	for j := range c.Settings {
		if st := &c.Settings[j]; st.Key != "" && st.Key == key {
			return st
		}
	}
	return nil
}

// isSection reports whether keys lie below key, as tokens is above
// tokens.max_token_length.
func (c *Command[S]) isSection(key string) bool {
	for _, st := range c.Settings {
		if strings.HasPrefix(st.Key, key+".") {
			return true
		}
	}
	return false
}

// keysUnder returns the keys that may follow prefix, for suggestions.
func (c *Command[S]) keysUnder(prefix string) []string {
	var keys []string
	for _, st := range c.Settings {
		if rest, ok := strings.CutPrefix(st.Key, prefix); ok && st.Key != "" {
			next, _, _ := strings.Cut(rest, ".")
			keys = append(keys, strings.TrimSuffix(next, "[]"))
		}
	}
	return keys
}

package charts

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the values table of the chart's README from values.yaml")

// valueDoc is one documented key of values.yaml.
type valueDoc struct {
	path        string // dotted, such as sidecar.image.tag
	section     bool   // a group of documented keys rather than a value
	typ         string // from values.schema.json
	def         string // the default, as JSON
	description string // the `# --` comment
}

// schemaNode is the part of values.schema.json the documentation reads.
type schemaNode struct {
	Ref        string                 `json:"$ref"`
	Type       any                    `json:"type"`
	Properties map[string]*schemaNode `json:"properties"`
}

// readValueDocs walks values.yaml and returns each key with its `# --` comment, its default and its type in
// values.schema.json. A mapping is a section when its keys carry `# --` comments of their own, and then all of
// them must; otherwise it is one value (such as resources) whose default is shown whole.
func readValueDocs(t *testing.T, dir string) []valueDoc {
	t.Helper()
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal([]byte(readFile(t, filepath.Join(dir, "values.yaml"))), &doc); err != nil {
		t.Fatal(err)
	}
	var schema struct {
		schemaNode
		Definitions map[string]*schemaNode `json:"definitions"`
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, "values.schema.json"))), &schema); err != nil {
		t.Fatal(err)
	}
	resolve := func(n *schemaNode) *schemaNode {
		if n != nil && n.Ref != "" {
			return schema.Definitions[strings.TrimPrefix(n.Ref, "#/definitions/")]
		}
		return n
	}

	var docs []valueDoc
	var walk func(m *yamlv3.Node, prefix string, s *schemaNode)
	walk = func(m *yamlv3.Node, prefix string, s *schemaNode) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			key, val := m.Content[i], m.Content[i+1]
			path := prefix + key.Value
			desc, ok := description(key.HeadComment)
			if !ok {
				t.Errorf("values.yaml: %s (line %d) has no `# --` comment", path, key.Line)
			}
			var ks *schemaNode
			if s != nil {
				ks = resolve(s.Properties[key.Value])
			}
			if ks == nil {
				t.Errorf("values.schema.json has no %s", path)
				ks = &schemaNode{}
			}
			d := valueDoc{path: path, typ: schemaType(ks), description: desc}
			if val.Kind == yamlv3.MappingNode && documentedChildren(val) {
				d.section = true
				docs = append(docs, d)
				walk(val, path+".", ks)
				continue
			}
			var x any
			if err := val.Decode(&x); err != nil {
				t.Fatalf("values.yaml %s: %v", path, err)
			}
			b, err := json.Marshal(x)
			if err != nil {
				t.Fatalf("values.yaml %s: %v", path, err)
			}
			d.def = string(b)
			docs = append(docs, d)
		}
		if s != nil {
			for name := range s.Properties {
				if prefix == "" && name == "global" {
					continue // Helm's, not the chart's
				}
				if !slices.ContainsFunc(m.Content, func(n *yamlv3.Node) bool { return n.Value == name }) {
					t.Errorf("values.schema.json has %s%s, which values.yaml lacks", prefix, name)
				}
			}
		}
	}
	walk(doc.Content[0], "", &schema.schemaNode)
	return docs
}

// description returns the text of a `# --` comment, its lines joined.
func description(comment string) (string, bool) {
	lines := strings.Split(strings.TrimSpace(comment), "\n")
	// Only the last comment block above the key counts: a blank line ends a block.
	start := 0
	for i, l := range lines {
		if strings.TrimSpace(l) == "" {
			start = i + 1
		}
	}
	lines = lines[start:]
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "# -- ") {
		return "", false
	}
	var words []string
	for i, l := range lines {
		l = strings.TrimPrefix(l, "#")
		if i == 0 {
			l = strings.TrimPrefix(l, " --")
		}
		words = append(words, strings.TrimSpace(l))
	}
	return strings.Join(words, " "), true
}

// documentedChildren says whether any key of a mapping carries a `# --` comment.
func documentedChildren(m *yamlv3.Node) bool {
	for i := 0; i < len(m.Content); i += 2 {
		if _, ok := description(m.Content[i].HeadComment); ok {
			return true
		}
	}
	return false
}

func schemaType(s *schemaNode) string {
	switch x := s.Type.(type) {
	case string:
		return x
	case []any:
		var parts []string
		for _, p := range x {
			parts = append(parts, fmt.Sprint(p))
		}
		return strings.Join(parts, " or ")
	}
	return ""
}

// TestChartValuesDocumented checks that every key of values.yaml has a `# --` comment and a type in
// values.schema.json, and that the schema describes no value that values.yaml lacks.
func TestChartValuesDocumented(t *testing.T) {
	docs := readValueDocs(t, chartDir)
	if len(docs) < 50 {
		t.Errorf("only %d documented values found", len(docs))
	}
	for _, d := range docs {
		if d.typ == "" {
			t.Errorf("%s has no type in values.schema.json", d.path)
		}
		if len(d.description) < 10 {
			t.Errorf("%s: description %q says too little", d.path, d.description)
		}
	}
}

const (
	tableStart = "<!-- values table: generated from values.yaml by the chart tests -->"
	tableEnd   = "<!-- end of values table -->"
)

// valuesTable renders the README's table of values.
func valuesTable(docs []valueDoc) string {
	var b strings.Builder
	b.WriteString("| Key | Type | Default | Description |\n|---|---|---|---|\n")
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, d := range docs {
		key := "`" + d.path + "`"
		def := ""
		if d.section {
			key = "**" + key + "**"
		} else {
			def = "`" + esc(d.def) + "`"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", key, d.typ, def, esc(d.description))
	}
	return b.String()
}

// TestChartReadmeValuesTable checks that the values table in the chart's README is the one values.yaml
// gives; with -update it rewrites it.
func TestChartReadmeValuesTable(t *testing.T) {
	path := filepath.Join(chartDir, "README.md")
	readme := readFile(t, path)
	start, end := strings.Index(readme, tableStart), strings.Index(readme, tableEnd)
	if start < 0 || end < start {
		t.Fatalf("%s lacks the markers %q and %q", path, tableStart, tableEnd)
	}
	want := tableStart + "\n\n" + valuesTable(readValueDocs(t, chartDir)) + "\n"
	got := readme[start:end]
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(readme[:start]+want+readme[end:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("the values table of %s is out of date; run go test -run TestChartReadmeValuesTable -update", path)
}

package rewrite

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// member is one name/value pair of a JSON object, its value kept as the exact
// bytes that were received.
type member struct {
	name  string
	value json.RawMessage
}

// object is a JSON object that remembers the order and the exact text of its
// members, so that what we do not change goes back out as it came in: numbers
// such as exp keep every digit, and unknown fields survive.
type object []member

// parseObject reads data as a single JSON object. Duplicate names are refused:
// parsers disagree on which of two values wins, and a token or claim that one
// reader sees one way and another reader another way is how checks get
// bypassed.
func parseObject(data []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	var obj object
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("not JSON: %w", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("not JSON: object key is not a string")
		}
		if seen[name] {
			return nil, fmt.Errorf("duplicate member %q", name)
		}
		seen[name] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("not JSON: member %q: %w", name, err)
		}
		obj = append(obj, member{name: name, value: v})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not JSON: data after the object")
	}
	return obj, nil
}

// index returns the position of the member with the given name, or -1.
func (o object) index(name string) int {
	for i, m := range o {
		if m.name == name {
			return i
		}
	}
	return -1
}

// set replaces the value of name in place, or inserts it first when absent.
// First, because the Azure SDKs write their system claims ahead of the
// registered ones, and a reader of the token finds the user id where it
// expects it.
func (o object) set(name string, value json.RawMessage) object {
	if i := o.index(name); i >= 0 {
		o[i].value = value
		return o
	}
	return append(object{{name: name, value: value}}, o...)
}

// stringValue returns the decoded string value of name. ok is false when the
// member is absent; err is set when it is present but not a string.
func (o object) stringValue(name string) (s string, ok bool, err error) {
	i := o.index(name)
	if i < 0 {
		return "", false, nil
	}
	if err := json.Unmarshal(o[i].value, &s); err != nil {
		return "", true, fmt.Errorf("member %q is not a string", name)
	}
	return s, true, nil
}

// appendJSON writes the object compactly.
func (o object) appendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	for i, m := range o {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendQuoted(dst, m.name)
		dst = append(dst, ':')
		dst = append(dst, m.value...)
	}
	return append(dst, '}')
}

// appendQuoted writes s as a JSON string. Unlike json.Marshal it leaves <, >
// and & alone: nothing here is embedded in HTML, and the fewer bytes we
// change the easier a rewritten token is to compare with the original.
func appendQuoted(dst []byte, s string) []byte {
	dst, _ = appendValue(dst, s) // a Go string always encodes
	return dst
}

// appendValue writes v as compact JSON, strings escaped as appendQuoted does
// them. A json.Number keeps its exact digits. On error dst is returned as is.
func appendValue(dst []byte, v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return dst, err
	}
	return append(dst, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...), nil
}

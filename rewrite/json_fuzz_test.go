package rewrite

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
)

// referenceParseObject is parseObject written plainly with encoding/json's
// tokenizer: the oracle that the fast scanner is fuzzed against.
func referenceParseObject(data []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	var obj object
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("object key is not a string")
		}
		if seen[name] {
			return nil, errors.New("duplicate member")
		}
		seen[name] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		obj = append(obj, member{name: name, value: v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the object")
	}
	return obj, nil
}

func FuzzParseObject(f *testing.F) {
	for _, s := range []string{
		`{}`, ` { "a" : 1 , "b":[1,{"c":"}"}], "d\"e":"x\\"} `, `{"a":1,"a":2}`, `{"\u0061":1,"a":2}`,
		`[1]`, `{"a":1}x`, `{"a":1} {}`, `{"a":tru}`, `{"a":"\ud800"}`, `{"a":-0.5e+3,"b":null,"c":false}`,
		`{"url":"https://x/client/?hub=chat","accessToken":"e.y.z"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parseObject(data)
		want, werr := referenceParseObject(data)
		if (err == nil) != (werr == nil) {
			t.Fatalf("parseObject(%q): error %v, reference %v", data, err, werr)
		}
		if err != nil {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("parseObject(%q): %d members, reference %d", data, len(got), len(want))
		}
		for i := range got {
			if got[i].name != want[i].name || !bytes.Equal(got[i].value, want[i].value) {
				t.Fatalf("parseObject(%q): member %d is %q=%s, reference %q=%s", data, i, got[i].name, got[i].value, want[i].name, want[i].value)
			}
		}
		if out := got.appendJSON(nil); !json.Valid(out) {
			t.Fatalf("appendJSON of %q wrote invalid JSON %q", data, out)
		}
	})
}

// FuzzAppendQuoted holds appendQuoted to encoding/json's encoding of a string
// (HTML characters left alone).
func FuzzAppendQuoted(f *testing.F) {
	for _, s := range []string{"", "alice", "a\"b\\c", "\x00\x01\b\f\n\r\t\x1f\x7f", "<&>", "\u2028\u2029", "\xe8\xff", "é€𝄞"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := appendValue(nil, s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendQuoted(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("appendQuoted(%q) = %s, encoding/json writes %s", s, got, want)
		}
	})
}

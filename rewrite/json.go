package rewrite

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
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
//
// The whole text is validated first (validJSON, as json.Valid, allocates
// nothing for objects nested less than 32 deep); the
// members are then cut out of it by a scanner that may rely on that validity.
// The values alias data, which must not change while the object is in use.
func parseObject(data []byte) (object, error) {
	return appendObject(make(object, 0, 8), data)
}

// appendObject is parseObject appending the members to dst, so that a caller
// that keeps the object only briefly can lend it room on its stack.
func appendObject(dst object, data []byte) (object, error) {
	if !validJSON(data) {
		var v any
		err := json.Unmarshal(data, &v) // only for its message
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return nil, errors.New("not a JSON object")
	}
	obj := dst
	i = skipSpace(data, i+1)
	for data[i] != '}' {
		end := skipString(data, i)
		name, err := decodeName(data[i:end])
		if err != nil {
			return nil, err
		}
		for _, m := range obj {
			if m.name == name {
				return nil, fmt.Errorf("duplicate member %q", name)
			}
		}
		i = skipSpace(data, end)
		i = skipSpace(data, i+1) // the colon
		end = skipValue(data, i)
		obj = append(obj, member{name: name, value: data[i:end:end]})
		i = skipSpace(data, end)
		if data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
	return obj, nil
}

// decodeName returns the text of a JSON string, quotes included in raw. Plain
// ASCII is taken as it is; escapes and other bytes are decoded as
// encoding/json decodes them (invalid UTF-8 becoming U+FFFD), so that two
// names that decode alike count as duplicates.
func decodeName(raw []byte) (string, error) {
	if plain(raw) {
		return knownName(raw[1 : len(raw)-1]), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("not JSON: %w", err)
	}
	return s, nil
}

// knownName returns b as a string, without allocating for the names that
// every negotiate body, token header and token payload carries: a body's
// dozen of them would otherwise cost a dozen allocations per negotiate.
func knownName(b []byte) string {
	switch string(b) { // compared without conversion
	case "url":
		return "url"
	case "accessToken":
		return "accessToken"
	case "AccessToken":
		return "AccessToken"
	case "Url":
		return "Url"
	case "baseUrl":
		return "baseUrl"
	case "token":
		return "token"
	case "alg":
		return "alg"
	case "typ":
		return "typ"
	case "kid":
		return "kid"
	case "aud":
		return "aud"
	case "exp":
		return "exp"
	case "nbf":
		return "nbf"
	case "iat":
		return "iat"
	case "iss":
		return "iss"
	case "sub":
		return "sub"
	case "jti":
		return "jti"
	case "role":
		return "role"
	case "asrs.s.uid":
		return "asrs.s.uid"
	case "asrs.s.aut":
		return "asrs.s.aut"
	case "nameid":
		return "nameid"
	}
	return string(b)
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string that starts at i.
func skipString(data []byte, i int) int {
	for i++; data[i] != '"'; i++ {
		if data[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// skipValue returns the index just past the valid JSON value at i.
func skipValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch data[i] {
			case '"':
				i = skipString(data, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	}
	for i < len(data) && !strings.ContainsRune(",}] \t\n\r", rune(data[i])) {
		i++
	}
	return i
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

// set replaces the value of name in place, or inserts it first when absent,
// in o's spare capacity when it has some.
// First, because the Azure SDKs write their system claims ahead of the
// registered ones, and a reader of the token finds the user id where it
// expects it.
func (o object) set(name string, value json.RawMessage) object {
	if i := o.index(name); i >= 0 {
		o[i].value = value
		return o
	}
	return slices.Insert(o, 0, member{name: name, value: value})
}

// stringValue returns the decoded string value of name. ok is false when the
// member is absent; err is set when it is present but not a string.
func (o object) stringValue(name string) (s string, ok bool, err error) {
	i := o.index(name)
	if i < 0 {
		return "", false, nil
	}
	v := o[i].value
	if len(v) < 2 || v[0] != '"' {
		return "", true, fmt.Errorf("member %q is not a string", name)
	}
	s, err = decodeName(v) // decodes any JSON string, not only names
	if err != nil {
		return "", true, fmt.Errorf("member %q is not a string", name)
	}
	return s, true, nil
}

// stringEquals reports whether name is present, and whether its value is a
// string equal to want, as stringValue would decode it. A value without
// escapes or non-ASCII bytes is compared where it lies.
func (o object) stringEquals(name, want string) (present, equal bool) {
	i := o.index(name)
	if i < 0 {
		return false, false
	}
	v := o[i].value
	if len(v) < 2 || v[0] != '"' {
		return true, false
	}
	if plain(v) {
		return true, string(v[1:len(v)-1]) == want
	}
	s, _, err := o.stringValue(name)
	return true, err == nil && s == want
}

// plain reports whether a JSON string's text decodes to itself: no
// escapes, only ASCII.
func plain(raw []byte) bool {
	for _, c := range raw {
		if c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
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
//
// It escapes exactly as encoding/json does otherwise (FuzzAppendQuoted holds
// it to that): quote, backslash and control characters, U+2028 and U+2029,
// and invalid UTF-8 as U+FFFD.
func appendQuoted(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
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

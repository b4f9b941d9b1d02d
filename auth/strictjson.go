package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// strictJSON reports an error unless b is exactly one JSON value in which no
// object names a member twice, at any depth. encoding/json, and so the JWT
// library, takes the last of two members of one name where other parsers
// take the first: a token or key set whose meaning depends on the reader is
// refused rather than read one way here and another way elsewhere.
//
// With fold, names that differ only in letter case count as one: encoding/json
// fills a struct field from a member of any case, so a key set read into
// structs could otherwise carry "kid" and "KID" and be read either way.
func strictJSON(b []byte, fold bool) error {
	if !json.Valid(b) {
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return err // its message says where: "invalid character '<' ..."
		}
		return errors.New("not a single JSON value")
	}
	_, err := checkMembers(b, skipSpace(b, 0), fold)
	return err
}

// checkMembers checks the value at b[i] of a text json.Valid accepted, and
// returns the index past it. It allocates only for names with escapes.
func checkMembers(b []byte, i int, fold bool) (int, error) {
	switch b[i] {
	case '"':
		return skipString(b, i), nil
	case '[':
		for i = skipSpace(b, i+1); b[i] != ']'; {
			end, err := checkMembers(b, i, fold)
			if err != nil {
				return 0, err
			}
			if i = skipSpace(b, end); b[i] == ',' {
				i = skipSpace(b, i+1)
			}
		}
		return i + 1, nil
	case '{':
		var seen [16][]byte // names so far; most objects have few
		names := seen[:0]
		for i = skipSpace(b, i+1); b[i] != '}'; {
			end := skipString(b, i)
			name := b[i+1 : end-1]
			if needsDecoding(name) {
				var s string
				_ = json.Unmarshal(b[i:end], &s) // valid, so it decodes
				name = []byte(s)
			}
			for _, n := range names {
				if bytes.Equal(n, name) || fold && bytes.EqualFold(n, name) {
					return 0, fmt.Errorf("member %q appears twice", truncate(string(name), 100))
				}
			}
			names = append(names, name)
			i = skipSpace(b, skipSpace(b, end)+1) // past the colon
			end, err := checkMembers(b, i, fold)
			if err != nil {
				return 0, err
			}
			if i = skipSpace(b, end); b[i] == ',' {
				i = skipSpace(b, i+1)
			}
		}
		return i + 1, nil
	}
	for i < len(b) && !bytes.ContainsRune([]byte(",]} \t\r\n"), rune(b[i])) {
		i++
	}
	return i, nil
}

// needsDecoding reports whether a member name must be decoded to compare it:
// escapes, or bytes outside ASCII, which encoding/json reads as UTF-8 (and
// invalid UTF-8 as U+FFFD, so that two different byte strings can name one
// member).
func needsDecoding(name []byte) bool {
	for _, c := range name {
		if c == '\\' || c >= 0x80 {
			return true
		}
	}
	return false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index past the string that starts at b[i].
func skipString(b []byte, i int) int {
	for i++; b[i] != '"'; i++ {
		if b[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// strictSegments applies strictJSON to the header and payload of a compact
// JWS, and returns the decoded payload. Segments that do not decode are left
// to the JWT library, which refuses them as malformed; the payload is then
// nil. It decodes them as the library does (unpadded base64url), so the
// payload of a token the library accepts is the JSON it read.
func strictSegments(raw string) ([]byte, error) {
	parts := strings.SplitN(raw, ".", 3)
	var payload []byte
	for i, name := range []string{"header", "payload"} {
		if i >= len(parts) {
			return nil, nil
		}
		seg, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil, nil
		}
		if err := strictJSON(seg, false); err != nil {
			return nil, fmt.Errorf("the token's %s: %w", name, err)
		}
		payload = seg
	}
	return payload, nil
}

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
func strictJSON(b []byte) error {
	if !json.Valid(b) {
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return err // its message says where: "invalid character '<' ..."
		}
		return errors.New("not a single JSON value")
	}
	return checkMembers(json.NewDecoder(bytes.NewReader(b)))
}

func checkMembers(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			name, err := dec.Token()
			if err != nil {
				return err
			}
			n, _ := name.(string)
			if seen[n] {
				return fmt.Errorf("member %q appears twice", truncate(n, 100))
			}
			seen[n] = true
			if err := checkMembers(dec); err != nil {
				return err
			}
		}
	case json.Delim('['):
		for dec.More() {
			if err := checkMembers(dec); err != nil {
				return err
			}
		}
	default:
		return nil
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

// strictSegments applies strictJSON to the header and payload of a compact
// JWS. Segments that do not decode are left to the JWT library, which
// refuses them as malformed.
func strictSegments(raw string) error {
	parts := strings.SplitN(raw, ".", 3)
	for i, name := range []string{"header", "payload"} {
		if i >= len(parts) {
			return nil
		}
		seg, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil
		}
		if err := strictJSON(seg); err != nil {
			return fmt.Errorf("the token's %s: %w", name, err)
		}
	}
	return nil
}

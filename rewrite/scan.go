package rewrite

import (
	"bytes"
	"encoding/base64"
	"slices"
	"strings"
)

// ForeignToken reports whether text holds a token that does not name userID
// in the format's user claim: anything shaped like a JWS in compact form
// (base64url segments joined by dots, the first two decoding to JSON objects),
// wherever it stands, whatever field or header holds it. With userID empty,
// every token is foreign.
//
// It is the last check before an answer leaves the sidecar: the rewrite puts
// the caller's id into the tokens it knows of, and this finds the ones it did
// not know of, in another field, nested, in a header, in a cookie. Tokens
// hidden behind JSON escapes (\u0065yJ...) or percent-encoding (%2E for the
// dots) are found too, as a client could undo either. Signatures are not
// checked: a token naming the caller is harmless to hand the caller, one
// naming anyone else, or no one, is not.
func (r *Rewriter) ForeignToken(text []byte, userID string) bool {
	return foreignToken(text, r.format, userID, 0)
}

// maxUnescapeDepth bounds how many layers of escaping are undone: JSON
// escapes of percent-encoding, and the reverse.
const maxUnescapeDepth = 3

func foreignToken(text []byte, f Format, userID string, depth int) bool {
	found := false
	forEachToken(text, func(payload []byte) bool {
		if userID == "" || !namesUser(payload, f, userID) {
			found = true
		}
		return !found
	})
	if found {
		return true
	}
	if depth >= maxUnescapeDepth {
		// Escapes beyond the layers undone: whatever they hide cannot be
		// judged, so a text that would still change is refused.
		return (bytes.IndexByte(text, '\\') >= 0 && !bytes.Equal(unescapeJSON(text), text)) ||
			(bytes.IndexByte(text, '%') >= 0 && !bytes.Equal(unescapePercent(text), text))
	}
	if bytes.IndexByte(text, '\\') >= 0 {
		if u := unescapeJSON(text); !bytes.Equal(u, text) && foreignToken(u, f, userID, depth+1) {
			return true
		}
	}
	if bytes.IndexByte(text, '%') >= 0 {
		if u := unescapePercent(text); !bytes.Equal(u, text) && foreignToken(u, f, userID, depth+1) {
			return true
		}
	}
	return false
}

// namesUser reports whether a token's payload segment holds userID in the
// format's user claim, and in every legacy user claim it has, as a rewritten
// token does, whatever the case they are spelt in. A payload that cannot be
// read names no one.
func namesUser(payloadSeg []byte, f Format, userID string) bool {
	payload, err := base64.RawURLEncoding.AppendDecode(make([]byte, 0, base64.RawURLEncoding.DecodedLen(len(payloadSeg))), payloadSeg)
	if err != nil {
		return false
	}
	// The claims are read where they lie, in room on the stack: judging
	// a token costs the one allocation of its decoded payload.
	var members [16]member
	claims, err := appendObject(members[:0], payload)
	if err != nil {
		return false
	}
	if present, equal := claims.stringEquals(f.UserClaim, userID); !present || !equal {
		return false
	}
	// Readers that look claims up without regard to case (.NET's
	// ClaimsIdentity.FindFirst does) may take any spelling of these names.
	for i, m := range claims {
		if !strings.EqualFold(m.name, f.UserClaim) && !slices.ContainsFunc(f.LegacyUserClaims, func(c string) bool { return strings.EqualFold(m.name, c) }) {
			continue
		}
		if len(m.value) < 2 || m.value[0] != '"' {
			return false
		}
		if got, err := decodeName(claims[i].value); err != nil || got != userID {
			return false
		}
	}
	return true
}

// forEachToken calls f with the payload segment of each token in text, until
// f returns false. A token is two adjacent dot-joined base64url segments
// that decode to something starting with a JSON object (whitespace allowed
// before the brace), whatever follows. The first may carry other base64url
// characters in front, in case a token is glued to a word.
func forEachToken(text []byte, f func(payload []byte) bool) {
	var room [16][]byte
	segs := room[:0]
	for i := 0; i <= len(text); {
		j := i
		for j < len(text) && isBase64URL(text[j]) {
			j++
		}
		segs = append(segs, text[i:j])
		if j < len(text) && text[j] == '.' {
			i = j + 1 // the group of dotted segments goes on
			continue
		}
		for k := 0; k+1 < len(segs); k++ {
			if opensObject(segs[k+1]) && (opensObject(segs[k]) || opensObjectWithin(segs[k])) {
				if !f(segs[k+1]) {
					return
				}
				// The next segment is this token's signature, random bytes
				// that may well decode to a brace: it is no payload.
				k += 2
			}
		}
		segs = segs[:0]
		i = j + 1
	}
}

// opensObject reports whether seg, decoded from base64url, starts with a
// JSON object: optional JSON whitespace, then '{'. Only a prefix is decoded.
func opensObject(seg []byte) bool {
	// The first character holds the top six bits of the first byte, and
	// only 'e' ('{'), 'I' (space), 'C' (tab, newline) and 'D' (carriage
	// return) can start one: most segments (host names, words) are passed
	// over without decoding.
	if len(seg) < 2 || !mayOpenObject(seg[0]) {
		return false
	}
	var buf [48]byte
	for len(seg) >= 2 {
		n := len(seg) &^ 3 // whole groups of four decode without padding trouble
		if n > 64 {
			n = 64
		}
		if n == 0 {
			n = len(seg)
		}
		m, err := base64.RawURLEncoding.Decode(buf[:], seg[:n])
		if err != nil {
			return false
		}
		for _, c := range buf[:m] {
			switch c {
			case ' ', '\t', '\n', '\r':
				continue
			case '{':
				return true
			}
			return false
		}
		seg = seg[n:] // whitespace so far: JSON allows any amount
	}
	return false
}

// mayOpenObject reports whether a segment starting with base64url character
// c may decode to JSON whitespace or '{' first.
func mayOpenObject(c byte) bool {
	return c == 'e' || c == 'I' || c == 'C' || c == 'D'
}

// opensObjectWithin reports whether seg has a suffix that opensObject: a
// token glued to the base64url characters before it.
func opensObjectWithin(seg []byte) bool {
	for i := 1; i+2 <= len(seg); i++ {
		if opensObject(seg[i:]) {
			return true
		}
	}
	return false
}

func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// unescapeJSON undoes JSON string escapes wherever they stand: \uXXXX for
// ASCII, \/ and the one-character escapes. Others are left as they are.
func unescapeJSON(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			out = append(out, b[i])
			continue
		}
		switch c := b[i+1]; c {
		case '"', '\\', '/':
			out = append(out, c)
			i++
		case 'u':
			if i+5 < len(b) {
				if v, ok := hexValue(b[i+2 : i+6]); ok && v < 0x80 {
					out = append(out, byte(v))
					i += 5
					continue
				}
			}
			out = append(out, b[i])
		default:
			out = append(out, b[i])
		}
	}
	return out
}

// unescapePercent undoes %XX escapes wherever they stand.
func unescapePercent(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '%' && i+2 < len(b) {
			if v, ok := hexValue(b[i+1 : i+3]); ok {
				out = append(out, byte(v))
				i += 2
				continue
			}
		}
		out = append(out, b[i])
	}
	return out
}

func hexValue(h []byte) (int, bool) {
	v := 0
	for _, c := range h {
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | int(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | int(c-'a'+10)
		case 'A' <= c && c <= 'F':
			v = v<<4 | int(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

package proxy

import (
	"bytes"
	"net/http"
)

// carriesToken reports whether a response the sidecar will not rewrite still
// holds something shaped like a JWS in compact form: a base64url segment
// that begins with `eyJ` (the encoding of `{"`), a dot, a second segment, and
// a second dot. The body is searched as raw bytes, whatever its JSON shape,
// so that no field name (accessToken, AccessToken, token, a url's
// access_token, one the app invents) and no nesting hides a service token,
// and so does the Location header of a redirect. Such a response must not
// reach a caller the token was not rewritten for.
func carriesToken(body []byte, header http.Header) bool {
	if containsJWS(body) {
		return true
	}
	for _, v := range header.Values("Location") {
		if containsJWS([]byte(v)) {
			return true
		}
	}
	return false
}

var jwsStart = []byte("eyJ")

func containsJWS(b []byte) bool {
	for {
		i := bytes.Index(b, jwsStart)
		if i < 0 {
			return false
		}
		b = b[i:]
		if n := jwsPrefixLen(b); n > 0 {
			return true
		}
		b = b[len(jwsStart):]
	}
}

// jwsPrefixLen returns the length of "seg.seg." at the start of b, where each
// seg is a non-empty run of base64url characters, or 0.
func jwsPrefixLen(b []byte) int {
	n := 0
	for seg := 0; seg < 2; seg++ {
		start := n
		for n < len(b) && isBase64URL(b[n]) {
			n++
		}
		if n == start || n >= len(b) || b[n] != '.' {
			return 0
		}
		n++
	}
	return n
}

func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

package auth

import "strings"

// MaxTokenBytes bounds the size of a bearer token the sidecar will parse. Real
// identity provider tokens, even with group claims, stay well below it; the
// bound keeps a hostile header from costing more than a small, fixed amount of
// work before it is refused.
const MaxTokenBytes = 16 << 10

// ParseBearer extracts the token from the values of an Authorization header, as
// RFC 6750 section 2.1 defines them: the scheme "Bearer" in any letter case,
// whitespace, then a b64token. It reports false when there is no usable token,
// including when the header is repeated, because two credentials in one request
// leave it unclear which one the upstream would act on.
func ParseBearer(values []string) (token string, ok bool) {
	if len(values) != 1 {
		return "", false
	}
	v := strings.TrimSpace(values[0])
	scheme, rest, found := strings.Cut(v, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(rest, " ")
	if token == "" || len(token) > MaxTokenBytes || !isB64Token(token) {
		return "", false
	}
	return token, true
}

// isB64Token reports whether s matches RFC 6750's b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/':
		default:
			return false
		}
	}
	return true
}

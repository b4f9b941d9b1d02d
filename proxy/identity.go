package proxy

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
)

// The App Service Authentication ("Easy Auth") headers. Bindings such as
// userId: "{headers.x-ms-client-principal-id}" and request.user in
// @azure/functions read them, so setting them from a verified token makes an
// unchanged app identity-aware.
// They are spelt as Go's header map keys them (canonical form), so that
// setting one costs no conversion.
const (
	headerPrincipal     = "X-Ms-Client-Principal"
	headerPrincipalID   = "X-Ms-Client-Principal-Id"
	headerPrincipalName = "X-Ms-Client-Principal-Name"
	headerPrincipalIDP  = "X-Ms-Client-Principal-Idp"
)

// maxPrincipalJSON bounds the claims carried in X-MS-CLIENT-PRINCIPAL, so the
// request stays within the header limits of the servers behind us (Node.js
// allows 16 KiB for all headers by default).
const maxPrincipalJSON = 6 << 10

// isIdentityHeader reports whether name is one of the Easy Auth identity
// headers, in any letter case and with '_' for '-': some servers and CGI-style
// frameworks treat the two alike, so either spelling can impersonate. The
// X-MS-TOKEN-* headers, in which App Service passes the caller's provider
// tokens, count too: an app may trust them as it trusts the principal.
func isIdentityHeader(name string) bool {
	// Every request's every header passes here: most leave at the first
	// five bytes, without allocating.
	if len(name) < len("X-MS-") || !strings.EqualFold(strings.ReplaceAll(name[:5], "_", "-"), "X-MS-") {
		return false
	}
	n := strings.ToUpper(strings.ReplaceAll(name, "_", "-"))
	switch n {
	case "X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-ID", "X-MS-CLIENT-PRINCIPAL-NAME", "X-MS-CLIENT-PRINCIPAL-IDP":
		return true
	}
	return strings.HasPrefix(n, "X-MS-TOKEN-")
}

// stripIdentity removes every client-supplied identity header.
func stripIdentity(h http.Header) {
	for name := range h {
		if isIdentityHeader(name) {
			delete(h, name)
		}
	}
}

// setIdentity sets the identity headers for a verified caller, as App Service
// would. Call stripIdentity first.
func setIdentity(h http.Header, id auth.Identity) {
	p := id.Memo(principalKey{}, func() any { return principal(id) }).(string)
	v := []string{id.UserID, id.Name, id.Issuer, p} // one allocation for the four
	h[headerPrincipalID] = v[0:1:1]
	h[headerPrincipalName] = v[1:2:2]
	h[headerPrincipalIDP] = v[2:3:3]
	h[headerPrincipal] = v[3:4:4]
}

// principalKey keys the X-MS-CLIENT-PRINCIPAL value in an identity's memo: a
// cached token's principal is encoded once.
type principalKey struct{}

type principalClaim struct {
	Typ string `json:"typ"`
	Val string `json:"val"`
}

// principal encodes the caller as App Service does in X-MS-CLIENT-PRINCIPAL:
// base64 of {"auth_typ", "claims": [{"typ", "val"}], "name_typ", "role_typ"}.
// Arrays become one entry per element; nested objects travel as JSON text.
// Claims are added in name order while they fit in maxPrincipalJSON; the
// user id also travels in X-MS-CLIENT-PRINCIPAL-ID, whatever the size.
func principal(id auth.Identity) string {
	claims := id.Claims()
	names := make([]string, 0, len(claims))
	for n := range claims {
		names = append(names, n)
	}
	sort.Strings(names)
	p := principalBuilder{claims: make([]principalClaim, 0, len(names)+4)}
	for _, n := range names {
		p.add(n, claims[n])
	}
	doc, _ := json.Marshal(struct {
		AuthTyp string           `json:"auth_typ"`
		Claims  []principalClaim `json:"claims"`
		NameTyp string           `json:"name_typ"`
		RoleTyp string           `json:"role_typ"`
	}{AuthTyp: id.Issuer, Claims: p.claims, NameTyp: "name", RoleTyp: "roles"})
	return base64.StdEncoding.EncodeToString(doc)
}

// principalBuilder collects claims as {typ, val} pairs within maxPrincipalJSON.
type principalBuilder struct {
	claims []principalClaim
	size   int
}

// add appends one entry per value of the claim (one per element of an
// array), while they fit; it reports false once one does not, so that the
// rest of that claim's values are left out.
func (p *principalBuilder) add(typ string, v any) bool {
	var val string
	switch v := v.(type) {
	case string:
		val = v
	case json.Number:
		val = v.String()
	case bool:
		val = strconv.FormatBool(v)
	case nil:
		return true
	case []any:
		for _, e := range v {
			if !p.add(typ, e) {
				return false
			}
		}
		return true
	default:
		b, _ := json.Marshal(v)
		val = string(b)
	}
	if p.size+len(typ)+len(val)+20 > maxPrincipalJSON {
		return false
	}
	p.size += len(typ) + len(val) + 20
	p.claims = append(p.claims, principalClaim{Typ: typ, Val: val})
	return true
}

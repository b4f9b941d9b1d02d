package proxy

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
)

// The App Service Authentication ("Easy Auth") headers. Bindings such as
// userId: "{headers.x-ms-client-principal-id}" and request.user in
// @azure/functions read them, so setting them from a verified token makes an
// unchanged app identity-aware.
const (
	headerPrincipal     = "X-MS-CLIENT-PRINCIPAL"
	headerPrincipalID   = "X-MS-CLIENT-PRINCIPAL-ID"
	headerPrincipalName = "X-MS-CLIENT-PRINCIPAL-NAME"
	headerPrincipalIDP  = "X-MS-CLIENT-PRINCIPAL-IDP"
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
	n := strings.ToUpper(strings.ReplaceAll(name, "_", "-"))
	switch n {
	case headerPrincipal, headerPrincipalID, headerPrincipalName, headerPrincipalIDP:
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
	h.Set(headerPrincipalID, id.UserID)
	h.Set(headerPrincipalName, id.Name)
	h.Set(headerPrincipalIDP, id.Issuer)
	h.Set(headerPrincipal, principal(id))
}

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
	names := make([]string, 0, len(id.Claims))
	for n := range id.Claims {
		names = append(names, n)
	}
	sort.Strings(names)
	var claims []principalClaim
	size := 0
	add := func(typ, val string) bool {
		if size+len(typ)+len(val)+20 > maxPrincipalJSON {
			return false
		}
		size += len(typ) + len(val) + 20
		claims = append(claims, principalClaim{Typ: typ, Val: val})
		return true
	}
	for _, n := range names {
		vals := claimStrings(id.Claims[n])
		for _, v := range vals {
			if !add(n, v) {
				break
			}
		}
	}
	doc, _ := json.Marshal(struct {
		AuthTyp string           `json:"auth_typ"`
		Claims  []principalClaim `json:"claims"`
		NameTyp string           `json:"name_typ"`
		RoleTyp string           `json:"role_typ"`
	}{AuthTyp: id.Issuer, Claims: claims, NameTyp: "name", RoleTyp: "roles"})
	return base64.StdEncoding.EncodeToString(doc)
}

func claimStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case json.Number:
		return []string{v.String()}
	case bool:
		return []string{fmt.Sprint(v)}
	case nil:
		return nil
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, claimStrings(e)...)
		}
		return out
	default:
		b, _ := json.Marshal(v)
		return []string{string(b)}
	}
}

package proxy

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// FuzzProtectConnection checks that no Connection header, however written,
// keeps a name that would delete what the sidecar sets, and that every other
// name survives.
func FuzzProtectConnection(f *testing.F) {
	for _, s := range []string{
		"keep-alive, X-MS-CLIENT-PRINCIPAL-ID",
		"x_ms_client_principal,authorization , ,Upgrade",
		"X-Request-ID,x-ms-token-aad-id-token",
		"",
	} {
		f.Add(s, "close")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		h := http.Header{"Connection": {a, b}}
		var others []string
		for _, v := range h["Connection"] {
			for _, name := range strings.Split(v, ",") {
				if name = strings.TrimSpace(name); name != "" && !isIdentityHeader(name) && !isProtectedHeader(name) {
					others = append(others, name)
				}
			}
		}
		protectConnection(h)
		var kept []string
		for _, v := range h["Connection"] {
			for _, name := range strings.Split(v, ",") {
				if name = strings.TrimSpace(name); name != "" {
					kept = append(kept, name)
				}
			}
		}
		for _, name := range kept {
			if isIdentityHeader(name) || isProtectedHeader(name) {
				t.Fatalf("Connection %q still names %q", h["Connection"], name)
			}
		}
		if !slices.Equal(kept, others) {
			t.Fatalf("Connection %q, %q became %q; want the other names %q kept", a, b, h["Connection"], others)
		}
	})
}

// TestHopHeadersCanonical: removeHopByHop deletes these names from header
// maps as they are written, which finds them only in canonical form.
func TestHopHeadersCanonical(t *testing.T) {
	for _, name := range hopHeaders {
		if c := http.CanonicalHeaderKey(name); c != name {
			t.Errorf("%q is not canonical; write it %q", name, c)
		}
	}
}

package proxy

import (
	"net/http"
	"strings"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1, which a
// proxy must not forward, plus Proxy-Connection, which old clients still send.
var hopHeaders = [...]string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopByHop deletes the hop-by-hop headers and every header that
// Connection names, as httputil.ReverseProxy does for the routes it serves.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		delete(h, name) // in canonical form already: no conversion
	}
}

// protectConnection removes from the Connection header every name of a
// header that the sidecar sets or vouches for. A proxy deletes the headers
// that Connection names before forwarding (they are hop-by-hop by the
// client's say-so), which happens after the sidecar has set them: a client
// listing X-MS-CLIENT-PRINCIPAL-ID there would take away the identity the
// sidecar set, and the app would see an anonymous caller whose request the
// sidecar had authenticated, or no Authorization at all.
func protectConnection(h http.Header) {
	values, ok := h["Connection"]
	if !ok {
		return
	}
	var kept []string
	for _, v := range values {
		for _, name := range strings.Split(v, ",") {
			name = strings.TrimSpace(name)
			if name == "" || isIdentityHeader(name) || isProtectedHeader(name) {
				continue
			}
			kept = append(kept, name)
		}
	}
	if len(kept) == 0 {
		delete(h, "Connection")
		return
	}
	h["Connection"] = []string{strings.Join(kept, ", ")}
}

// isProtectedHeader reports whether name is a header, besides the identity
// headers, that the app must receive as the sidecar passed it.
func isProtectedHeader(name string) bool {
	return strings.EqualFold(name, "Authorization") || strings.EqualFold(name, headerRequestID)
}

// restrictUpgrade removes a protocol upgrade the sidecar does not vouch for.
// Only WebSocket may pass, and only on routes the sidecar streams through
// (not negotiate routes, which it reads and answers itself). Any other
// upgrade, h2c above all, would hand the connection to the app in a protocol
// the sidecar does not read: through an h2c-capable app every later request
// on it would bypass authentication and header stripping. Without the
// Upgrade header the request is served as plain HTTP/1.1, which RFC 9110
// section 7.8 lets any server do.
func restrictUpgrade(h http.Header, allowWebSocket bool) {
	up, ok := h["Upgrade"]
	if !ok {
		return
	}
	if allowWebSocket && len(up) == 1 && strings.EqualFold(strings.TrimSpace(up[0]), "websocket") {
		return
	}
	delete(h, "Upgrade")
	delete(h, "Http2-Settings")
}

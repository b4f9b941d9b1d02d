package proxy

import (
	"encoding/json"
	"net/http"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
)

// writeProblem answers with a short RFC 9457 problem document. It is the one
// place where errors become responses; details stay in the logs.
//
// A browser reads a cross-origin response only if it carries CORS headers,
// and the app, which would add them to its own answers, never sees a request
// we refuse. Without them a browser client could not tell an expired token
// (get a new one) from a network failure. The headers allow the calling
// origin to read this response alone; it holds nothing but fixed text, and a
// bearer token, unlike a cookie, is never sent by the browser on its own, so
// no other site learns anything from it.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, title, detail string) {
	body, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}{"about:blank", title, status, detail})
	if origin := r.Header.Get("Origin"); origin != "" {
		w.Header().Set("Access-Control-Allow-Origin", origin)
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Set("Access-Control-Expose-Headers", "WWW-Authenticate, Retry-After, X-Request-ID")
		w.Header().Add("Vary", "Origin")
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeUnauthorized answers 401 with the RFC 6750 challenge. A request
// without a token gets a plain challenge; a bad token gets
// error="invalid_token", so that clients know to get a new one.
func writeUnauthorized(w http.ResponseWriter, r *http.Request, reason auth.Reason) {
	challenge, detail := `Bearer`, "A bearer token is required."
	switch reason {
	case auth.ReasonMissing:
	case auth.ReasonExpired:
		challenge = `Bearer error="invalid_token", error_description="the token has expired"`
		detail = "The bearer token has expired."
	default:
		challenge = `Bearer error="invalid_token", error_description="the token is not valid"`
		detail = "The bearer token is not valid."
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeProblem(w, r, http.StatusUnauthorized, "Unauthorized", detail)
}
